#!/usr/bin/env bash
# Reproduce the shipped models of src/napari_lowdose/models/pretrained/ with the
# project's own commands (docs/models.md records the run: times, machine, results).
#
#   bash scripts/train-shipped-models.sh [WORKDIR]
#
# CPU recipe (no GPU was available): a 384² Table-1/MTF-4 high-dose set of 300
# structures, then both networks on 160² crops, 120 steps of 4 crops per epoch,
# validation F1 (p >= 0.9) on central 256² crops of 60 validation images.
# Both trainings run at once, one thread each. Rerun to resume.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-train-work}
bin=.venv/bin/napari-lowdose
mkdir -p "$work/models"

$bin simulate --structures 300 --image-epochs 10 --size 384 --dose-range high --mtf MTF4 \
    --seed 1 --workers 2 --diameter-A 15,25 --out "$work/au_ceo2_384_high"

common=(--data "$work/au_ceo2_384_high" --steps-per-epoch 120 --crop 160 --batch-size 4
        --val-crop 256 --max-val-images 60 --device cpu --seed 0)
OMP_NUM_THREADS=1 $bin train "${common[@]}" --arch msdnet --depth 30 --width 2 --kernel-size 3 \
    --epochs 8 --out "$work/models/msdnet_au_ceo2.safetensors" &
OMP_NUM_THREADS=1 $bin train "${common[@]}" --arch unet --epochs 14 \
    --out "$work/models/unet_au_ceo2.safetensors" &
wait

for name in msdnet_au_ceo2 unet_au_ceo2; do
    cp "$work/models/$name.safetensors" "$work/models/$name.json" src/napari_lowdose/models/pretrained/
done
PYTHONPATH=src .venv/bin/python benchmarks/eval_f1_vs_dose.py \
    src/napari_lowdose/models/pretrained/msdnet_au_ceo2.safetensors \
    src/napari_lowdose/models/pretrained/unet_au_ceo2.safetensors \
    --particles 3 --frames 40 --size 384 --out docs/images/f1_vs_dose

# Low-dose variants: the same structures at 10¹–10⁴ e⁻/Å² (exit waves reused), then the
# shipped networks fine-tuned on them.
$bin simulate --structures 300 --image-epochs 10 --size 384 --dose-range low --mtf MTF4 \
    --seed 1 --workers 1 --diameter-A 15,25 --waves-from "$work/au_ceo2_384_high" \
    --out "$work/au_ceo2_384_low"
low=(--data "$work/au_ceo2_384_low" --steps-per-epoch 120 --crop 160 --batch-size 4
     --val-crop 256 --max-val-images 60 --device cpu --seed 0 --lr 3e-4)
OMP_NUM_THREADS=1 $bin train "${low[@]}" --init msdnet-au-ceo2 --epochs 4 \
    --out "$work/models/msdnet_au_ceo2_low.safetensors" &
# U-net: unet-au-ceo2 continued on the high set at lr 3e-4 (a, b), then the low set (c);
# b and c keep the best F1 at each epoch's own threshold (docs/models.md).
high=(--data "$work/au_ceo2_384_high" --steps-per-epoch 120 --crop 160 --batch-size 4
      --val-crop 256 --max-val-images 60 --device cpu --lr 3e-4)
(
    OMP_NUM_THREADS=1 $bin train "${high[@]}" --seed 3 --init unet-au-ceo2 --epochs 2 \
        --out "$work/models/unet_ft_e2.safetensors"
    OMP_NUM_THREADS=1 $bin train "${high[@]}" --seed 4 --init "$work/models/unet_ft_e2.safetensors" \
        --select-by calibrated --epochs 3 --out "$work/models/unet_ft2_e3.safetensors"
    OMP_NUM_THREADS=1 $bin train "${low[@]}" --init "$work/models/unet_ft2_e3.safetensors" \
        --select-by calibrated --epochs 6 --out "$work/models/unet_au_ceo2_low.safetensors"
) &
wait
for name in msdnet_au_ceo2_low unet_au_ceo2_low; do
    cp "$work/models/$name.safetensors" "$work/models/$name.json" src/napari_lowdose/models/pretrained/
done
# Threshold calibration (trainings since record it themselves): the best-F1 threshold on
# each model's own validation images, stored in its metadata (segment --threshold model).
# (unet_au_ceo2_low records its own, from training with --select-by calibrated.)
for model in msdnet_au_ceo2:high unet_au_ceo2:high msdnet_au_ceo2_low:low; do
    OMP_NUM_THREADS=1 $bin calibrate "src/napari_lowdose/models/pretrained/${model%%:*}.safetensors" \
        --data "$work/au_ceo2_384_${model##*:}" --max-val-images 60 --device cpu
done
PYTHONPATH=src .venv/bin/python benchmarks/eval_f1_vs_dose.py \
    src/napari_lowdose/models/pretrained/{msdnet_au_ceo2,unet_au_ceo2,msdnet_au_ceo2_low,unet_au_ceo2_low}.safetensors \
    --particles 3 --frames 40 --size 384 --thresholds 0.9,0.5,model --clean --out docs/images/f1_vs_dose

# Denoiser (issue 7): the same exit waves, noisy vs noise-free, 0.05–100 e⁻/px; plain L1,
# then fine-tuned with the noise-weighted loss (docs/models.md).
den=(--source simulated --data "$work/au_ceo2_384_high" --e-per-px-range 0.05,100
     --images-per-wave 2 --clean-cache 600 --crop 128 --batch-size 8 --max-val-images 16
     --val-crop 256 --device cpu)
OMP_NUM_THREADS=1 $bin train-denoiser "${den[@]}" --base-channels 24 --levels 3 --lr 1e-3 \
    --epochs 25 --seed 0 --out "$work/models/denoiser_au_ceo2_l1.safetensors"
OMP_NUM_THREADS=1 $bin train-denoiser "${den[@]}" --init "$work/models/denoiser_au_ceo2_l1.safetensors" \
    --noise-weighted-loss --lr 3e-4 --epochs 12 --seed 1 \
    --out "$work/models/denoiser_au_ceo2.safetensors"
cp "$work/models/denoiser_au_ceo2.safetensors" "$work/models/denoiser_au_ceo2.json" \
    src/napari_lowdose/models/pretrained/
PYTHONPATH=src .venv/bin/python benchmarks/eval_denoise_vs_dose.py denoiser-au-ceo2 \
    --particles 2 --frames 24 --size 384 --out docs/images/denoise_vs_dose

# Broad denoiser (issue 16): denoiser-au-ceo2 fine-tuned on phantoms (aggregates, supports,
# lattice patches; WIDE noise and scintillator excess noise) mixed with WIDE exit waves
# (docs/models.md, "The broad denoiser"); checked on the real OneView pair and on HR-TEM.
[ -d "$work/wide_384_low" ] || OMP_NUM_THREADS=1 $bin simulate --structures 240 --image-epochs 10 \
    --size 384 --dose-range 5,10000 --mtf WIDE --seed 7 --workers 1 --sampling-A 0.05,0.10 \
    --diameter-A 10,40 --out "$work/wide_384_low"
OMP_NUM_THREADS=1 $bin train-denoiser --source phantoms --phantoms 192 \
    --data "$work/wide_384_low" --max-waves 48 --images-per-wave 2 --clean-cache 200 \
    --crop 128 --batch-size 8 --max-val-images 12 --val-crop 192 \
    --init denoiser-au-ceo2 --noise-weighted-loss --lr 3e-4 --epochs 30 --seed 2 --device cpu \
    --out "$work/models/denoiser_broad.safetensors"
cp "$work/models/denoiser_broad.safetensors" "$work/models/denoiser_broad.json" \
    src/napari_lowdose/models/pretrained/
OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/eval_denoise_real_pair.py \
    denoiser-au-ceo2 denoiser-broad
PYTHONPATH=src .venv/bin/python benchmarks/eval_denoise_vs_dose.py denoiser-au-ceo2 denoiser-broad \
    --particles 5 --frames 20 --size 384 --out /tmp/denoise_vs_dose_broad
