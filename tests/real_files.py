"""What each real-format file holds, as its own metadata states it.

Pixel sizes are in Å, converted from the file's own calibration:
- TIA: element calibration ``CalibrationDelta`` = 6.281833616298531e-09 m;
- EMD Si100: dim vectors step 0.25 with units "[n_m]", named R_x, R_y (stored x first);
- MRC movie: header cell -80 Å over 8 px (sign dropped, a warning is given);
- DM-saved TIFF: Gatan tags 65009/65010 = 0.16867469251155853 with unit µm;
- DM and the example EMD carry unit-less calibrations (scale 1, no unit): uncalibrated.
"""

TIA_PIXEL_A = 6.281833616298531e-09 * 1e10

REAL_FILES = {
    "dm_2D_test-1.dm3": ((2, 2), None),
    "dm_2D_test-1.dm4": ((2, 2), None),
    "dm_3D_test-1.dm3": ((2, 2, 2), None),
    "dm_3D_test-1.dm4": ((2, 2, 2), None),
    "tia_old_64x64_TEM_images_acquire.emi": ((64, 64), TIA_PIXEL_A),
    "tia_old_64x64_TEM_images_acquire_1.ser": ((64, 64), TIA_PIXEL_A),
    "tia_old_64x64x5_TEM_preview.emi": ((5, 64, 64), TIA_PIXEL_A),
    "tia_old_64x64x5_TEM_preview_1.ser": ((5, 64, 64), TIA_PIXEL_A),
    "emd_example_image.emd": ((3, 3), None),
    "emd_Si100_2x1x1_3D.emd": ((22, 44), 2.5),  # dims R_x (44), R_y (22): shown (y, x)
    "mrc_20241021_00405_movie.mrc": ((32, 4, 8), 10.0),
    "tiff_test_loading_image_saved_with_DM.tif": ((68, 68), 0.16867469251155853 * 1e4),
}
