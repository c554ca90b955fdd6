"""Atomic models of CeO2-supported Au particles and their label masks (Larsen et al., Sec. 2).

The training recipe of Larsen et al. (2023), Section 2:

* an Au FCC particle of random size (a Wulff construction with {111}, {100},
  {110} facets), with [110] along the optical axis (z);
* truncated at a random (111) layer near its centre; the (111) face sits on a
  (111) surface of a CeO2 slab (fluorite, a = 5.411 Å), epitaxially
  (Au[1-10] ∥ CeO2[1-10] ∥ z, Au(111) ∥ CeO2(111)), so the interface is seen
  edge-on as in a profile image;
* the whole system tilted by up to 3° off the zone axis about a random axis in
  the image plane, rotated about the optical axis by a random angle, and the
  particle placed at a random position in the field of view.

The multislice is periodic, so the cell is the field plus a margin on every
side; atoms are kept only inside the cell, and images are cropped to the field
(:attr:`StructureGeometry.crop`) so that wrap-around at the cell edges never
reaches the image.

The label of Larsen et al. is the convex hull of the Au atoms projected on the
image plane, rasterised on the image grid (Au = 1; vacuum and support = 0):
:func:`projected_hull_mask`.

Everything is drawn from one :class:`numpy.random.Generator`; the same seed
gives the same structure bit for bit.
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.cluster import wulff_construction
from scipy.spatial import ConvexHull, QhullError
from skimage.draw import polygon2mask

__all__ = [
    "AU_LATTICE_A",
    "CEO2_LATTICE_A",
    "PARTICLE",
    "SUPPORT",
    "StructureGeometry",
    "StructureRecipe",
    "SupportedParticle",
    "build_supported_particle",
    "next_5_smooth",
    "projected_hull_mask",
]

AU_LATTICE_A = 4.078
CEO2_LATTICE_A = 5.411
#: Values of ``atoms.get_tags()``: which atoms are the particle and which the support.
PARTICLE = 1
SUPPORT = 2

# Relative Au surface energies for the Wulff shape: γ100/γ111 ≈ 1.1 and
# γ110/γ111 ≈ 1.2 (close to DFT values for Au), giving truncated octahedra.
_AU_SURFACES = ((1, 0, 0), (1, 1, 1), (1, 1, 0))
_AU_SURFACE_ENERGIES = (1.10, 1.00, 1.20)
# Beam frame in crystal coordinates (rows): x ∥ [11-2], y ∥ [111] (interface
# normal, pointing into the particle), z ∥ [1-10] (optical axis).
_CRYSTAL_TO_BEAM = np.array(
    [
        np.array([1.0, 1.0, -2.0]) / math.sqrt(6.0),
        np.array([1.0, 1.0, 1.0]) / math.sqrt(3.0),
        np.array([1.0, -1.0, 0.0]) / math.sqrt(2.0),
    ]
)
# Fluorite CeO2 in the cubic cell (fractional): Ce on the FCC sites, O on the
# eight tetrahedral sites.
_FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])
_TETRA = np.array([[i, j, k] for i in (0.25, 0.75) for j in (0.25, 0.75) for k in (0.25, 0.75)])
# O (111) planes lie a quarter of the (111) spacing above and below each Ce plane.
_CE_O_PLANE_OFFSET_A = CEO2_LATTICE_A / math.sqrt(3.0) / 4.0  # 0.781 Å
_VACUUM_Z_A = 2.0


@dataclass(frozen=True)
class StructureRecipe:
    """Ranges that one supported-particle structure is drawn from.

    Parameters
    ----------
    size_px : int
        Side of the square field of view (the image) in pixels.
    sampling_range_A : (float, float)
        Pixel size in Å/px, uniform (Table 1: 0.07–0.08 Å/px).
    diameter_range_A : (float, float)
        Diameter of the Au particle before truncation in Å, uniform; the upper
        end is clipped to 80 % of the field so the particle fits.
    max_tilt_deg : float
        Largest tilt off the [110] zone axis (Larsen et al.: 3°).
    support_thickness_range_A : (float, float)
        Thickness of the CeO2 slab along the beam in Å, uniform.
    margin_A : float
        Margin simulated around the field and cropped away. 6 Å keeps the
        wrap-around of the most delocalising Table 1 optics (defocus 200 Å,
        Cs 12.45 µm, focal spread 5 Å, blur 0.1 Å) below 0.2 % of the image
        contrast (RMS) against a 16 Å margin; see ``docs/benchmarks.md``.
    interface_gap_A : float
        Distance between the Au (111) bottom layer and the top O layer of CeO2.
    truncation_layers : int
        The (111) layer the particle is cut at is the central one ± up to this
        many layers.
    """

    size_px: int = 640
    sampling_range_A: tuple[float, float] = (0.07, 0.08)
    diameter_range_A: tuple[float, float] = (15.0, 40.0)
    max_tilt_deg: float = 3.0
    support_thickness_range_A: tuple[float, float] = (15.0, 40.0)
    margin_A: float = 6.0
    interface_gap_A: float = 2.4
    truncation_layers: int = 1

    def __post_init__(self) -> None:
        if int(self.size_px) < 16:
            raise ValueError(f"size_px must be at least 16, got {self.size_px}")
        for name in ("sampling_range_A", "diameter_range_A", "support_thickness_range_A"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(low, high)}")
        if not 0 <= self.max_tilt_deg <= 45:
            raise ValueError(f"max_tilt_deg must be in [0, 45], got {self.max_tilt_deg}")
        if self.margin_A < 0 or self.interface_gap_A < 0 or self.truncation_layers < 0:
            raise ValueError("margin_A, interface_gap_A and truncation_layers must be >= 0")

    def diameter_note(self) -> str:
        """One sentence when the field is too small for the diameter range, else ``""``.

        A particle is at most 80 % of the field (:func:`supported_particle`), so larger
        diameters of the range are drawn smaller, silently unless this is said. Said when
        more than a quarter of the range (at the finest sampling) cannot be drawn; the
        paper's recipe (640 px, 15–40 Å) loses its top 4 Å, which is not worth a warning.
        """
        field_A = int(self.size_px) * float(self.sampling_range_A[0])
        limit_A = 0.8 * field_A
        low, high = self.diameter_range_A
        if high <= limit_A or (high > low and (high - limit_A) / (high - low) <= 0.25):
            return ""
        return (f"the field ({self.size_px} px at {self.sampling_range_A[0]:g} Å/px = "
                f"{field_A:.3g} Å) holds particles of at most {limit_A:.3g} Å, so the "
                f"diameters of {low:g}–{high:g} Å above that are drawn smaller; a field of "
                f"{int(np.ceil(high / 0.8 / self.sampling_range_A[0]))} px holds them all")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "StructureRecipe":
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        names = {f for f in cls.__dataclass_fields__}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown structure recipe keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass(frozen=True)
class StructureGeometry:
    """Grid of one structure: the periodic cell and the field cropped from it.

    Parameters
    ----------
    sampling_A : float
        Pixel size in Å/px (the same along y and x).
    cell_px : int
        Side of the square multislice cell in pixels (an FFT-friendly size).
    size_px : int
        Side of the field (image) in pixels.
    margin_px : int
        Offset of the field inside the cell, in pixels, along y and x.
    """

    sampling_A: float
    cell_px: int
    size_px: int
    margin_px: int

    @classmethod
    def for_field(cls, size_px: int, sampling_A: float, margin_A: float) -> "StructureGeometry":
        """Cell = field + at least ``margin_A`` on every side, rounded up to a 5-smooth size."""
        margin_px = int(math.ceil(margin_A / sampling_A))
        cell_px = next_5_smooth(int(size_px) + 2 * margin_px)
        return cls(float(sampling_A), int(cell_px), int(size_px), (cell_px - int(size_px)) // 2)

    @property
    def cell_A(self) -> float:
        """Side of the cell in Å."""
        return self.cell_px * self.sampling_A

    @property
    def field_origin_A(self) -> float:
        """Position (y and x) of the field's first pixel in the cell, in Å."""
        return self.margin_px * self.sampling_A

    @property
    def crop(self) -> tuple[slice, slice]:
        """Slices that cut the field out of a (y, x) array of the cell."""
        window = slice(self.margin_px, self.margin_px + self.size_px)
        return (window, window)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


@dataclass
class SupportedParticle:
    """One drawn structure.

    Attributes
    ----------
    atoms : ase.Atoms
        Particle and support in an orthogonal periodic cell; x and y in the
        image plane (image rows are y), z along the beam. Tags:
        :data:`PARTICLE` or :data:`SUPPORT`.
    geometry : StructureGeometry
        Cell and field grid.
    parameters : dict
        Everything the structure was drawn with (JSON-ready).
    """

    atoms: Atoms
    geometry: StructureGeometry
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def particle_atoms(self) -> Atoms:
        """The Au atoms only."""
        return self.atoms[self.atoms.get_tags() == PARTICLE]

    def mask(self) -> np.ndarray:
        """Label of the field: convex hull of the projected Au atoms (uint8, 1 = Au)."""
        return projected_hull_mask(self.particle_atoms.positions[:, :2], self.geometry)


def next_5_smooth(n: int) -> int:
    """Smallest ``2^a 3^b 5^c >= n``: sizes FFTW transforms fastest (``FFTW_ESTIMATE``).

    scipy's ``next_fast_len`` also allows factors 7 and 11, which pocketfft
    handles well but FFTW's estimated plans do not (847² is 1.5× slower than 864²).
    """
    best = 2 * max(int(n), 1)
    power2 = 1
    while power2 < best:
        power3 = power2
        while power3 < best:
            power5 = power3
            while power5 < best:
                if power5 >= n:
                    best = power5
                power5 *= 5
            power3 *= 3
        power2 *= 2
    return best


def projected_hull_mask(positions_xy_A: np.ndarray, geometry: StructureGeometry) -> np.ndarray:
    """Rasterise the convex hull of projected atom positions on the field grid.

    Parameters
    ----------
    positions_xy_A : ndarray, shape (n, 2)
        Atom positions (x, y) in Å in cell coordinates.
    geometry : StructureGeometry
        Grid: field pixel (row r, column c) is centred at
        ``((margin_px + r)·s, (margin_px + c)·s)`` in (y, x), as abTEM's grid.

    Returns
    -------
    mask : ndarray of uint8, shape (size_px, size_px)
        1 inside the hull (pixel centres), 0 outside.
    """
    shape = (geometry.size_px, geometry.size_px)
    positions = np.asarray(positions_xy_A, dtype=np.float64)
    if positions.shape[0] < 3:
        return np.zeros(shape, dtype=np.uint8)
    rows_cols = positions[:, ::-1] / geometry.sampling_A - geometry.margin_px
    try:
        hull = ConvexHull(rows_cols)
    except QhullError:  # all atoms on one line: no area
        return np.zeros(shape, dtype=np.uint8)
    return polygon2mask(shape, rows_cols[hull.vertices]).astype(np.uint8)


def build_supported_particle(
    rng: np.random.Generator | int, recipe: StructureRecipe | None = None
) -> SupportedParticle:
    """Draw one CeO2-supported Au particle (Larsen et al., Sec. 2).

    Parameters
    ----------
    rng : numpy.random.Generator or int
        Random generator or seed; the same seed gives the same structure.
    recipe : StructureRecipe, optional
        Ranges to draw from; the defaults follow the paper.

    Returns
    -------
    SupportedParticle
    """
    rng = np.random.default_rng(rng)
    recipe = recipe or StructureRecipe()
    sampling_A = float(rng.uniform(*recipe.sampling_range_A))
    geometry = StructureGeometry.for_field(recipe.size_px, sampling_A, recipe.margin_A)
    field_A = recipe.size_px * sampling_A
    max_diameter_A = 0.8 * field_A
    low_A, high_A = recipe.diameter_range_A
    diameter_A = float(rng.uniform(min(low_A, max_diameter_A), min(high_A, max_diameter_A)))

    particle = _truncated_au_particle(rng, diameter_A, recipe.truncation_layers)
    interface_y_A = particle["interface_y_A"]
    au = particle["positions"]
    support_thickness_A = float(rng.uniform(*recipe.support_thickness_range_A))

    tilt_deg = float(rng.uniform(0.0, recipe.max_tilt_deg))
    tilt_axis_deg = float(rng.uniform(0.0, 360.0))
    rotation_deg = float(rng.uniform(0.0, 360.0))
    transform = _rotation_z(rotation_deg) @ _tilt(tilt_axis_deg, tilt_deg)

    # Particle centre (projected bounding-box centre after the transform) at a
    # random position that keeps the whole particle in the field.
    au_t = au @ transform.T
    lo, hi = au_t[:, :2].min(axis=0), au_t[:, :2].max(axis=0)
    half_extent = (hi - lo) / 2
    centre = (hi + lo) / 2
    origin_A = geometry.field_origin_A
    pad_A = 2.0 * sampling_A
    position_xy_A = np.array(
        [
            rng.uniform(
                origin_A + half_extent[i] + pad_A,
                max(
                    origin_A + field_A - half_extent[i] - pad_A, origin_A + half_extent[i] + pad_A
                ),
            )
            for i in range(2)
        ]
    )
    reach_A = math.sqrt(2.0) * geometry.cell_A + 2 * half_extent.max()
    support, support_symbols = _ceo2_support(
        top_y_A=interface_y_A - recipe.interface_gap_A,
        half_width_A=reach_A,
        depth_A=reach_A,
        thickness_A=support_thickness_A,
    )
    cell_A = geometry.cell_A
    # Slices cover the particle and the slab (whose tilted faces are trimmed to it)
    # plus a little vacuum: empty slices cost as much as full ones.
    z_extent_A = max(np.ptp(au_t[:, 2]), support_thickness_A) + 2 * _VACUUM_Z_A
    z_centre_A = (au_t[:, 2].max() + au_t[:, 2].min()) / 2
    shift = np.array([*(position_xy_A - centre[:2]), z_extent_A / 2 - z_centre_A])
    au_cell = au_t + shift
    support_cell = support @ transform.T + shift
    inside = (
        np.all((support_cell[:, :2] >= 0.0) & (support_cell[:, :2] < cell_A), axis=1)
        & (support_cell[:, 2] >= 0)
        & (support_cell[:, 2] < z_extent_A)
    )
    support_cell = support_cell[inside]
    support_symbols = support_symbols[inside]

    symbols = ["Au"] * au_cell.shape[0] + support_symbols.tolist()
    atoms = Atoms(
        symbols=symbols,
        positions=np.concatenate([au_cell, support_cell]),
        cell=[cell_A, cell_A, z_extent_A],
        pbc=True,
        tags=[PARTICLE] * au_cell.shape[0] + [SUPPORT] * support_cell.shape[0],
    )
    parameters = {
        "sampling_A": sampling_A,
        "diameter_A": diameter_A,
        "n_au_atoms": int(au_cell.shape[0]),
        "n_support_atoms": int(support_cell.shape[0]),
        "truncation_layer_offset": particle["layer_offset"],
        "tilt_deg": tilt_deg,
        "tilt_axis_deg": tilt_axis_deg,
        "rotation_deg": rotation_deg,
        "position_xy_A": [float(v) for v in position_xy_A],
        "support_thickness_A": support_thickness_A,
        "cell_A": [cell_A, cell_A, float(z_extent_A)],
        **geometry.to_dict(),
    }
    return SupportedParticle(atoms=atoms, geometry=geometry, parameters=parameters)


def _truncated_au_particle(
    rng: np.random.Generator, diameter_A: float, truncation_layers: int
) -> dict[str, Any]:
    """Wulff Au particle in the beam frame, cut at a (111) layer near its centre."""
    n_atoms = max(13, int(round(math.pi / 6 * diameter_A**3 * 4 / AU_LATTICE_A**3)))
    cluster = wulff_construction(
        "Au",
        _AU_SURFACES,
        _AU_SURFACE_ENERGIES,
        n_atoms,
        "fcc",
        rounding="closest",
        latticeconstant=AU_LATTICE_A,
    )
    positions = cluster.positions - cluster.positions.mean(axis=0)
    beam = positions @ _CRYSTAL_TO_BEAM.T
    spacing_A = AU_LATTICE_A / math.sqrt(3.0)
    layer = np.round(beam[:, 1] / spacing_A).astype(int)
    centre_layer = int(np.round(np.median(layer)))
    offset = int(rng.integers(-truncation_layers, truncation_layers + 1))
    cut_layer = centre_layer + offset
    keep = layer >= cut_layer
    return {
        "positions": beam[keep],
        "interface_y_A": cut_layer * spacing_A,
        "layer_offset": offset,
    }


def _ceo2_support(
    top_y_A: float, half_width_A: float, depth_A: float, thickness_A: float
) -> tuple[np.ndarray, np.ndarray]:
    """CeO2 atoms (beam frame) filling x ∈ ±half_width, y ∈ [top − depth, top], z ∈ ±thickness/2.

    The (111) surface is O-terminated: a Ce (111) plane lies 0.781 Å below the top.
    Returns positions (n, 3) in Å and chemical symbols (n,).
    """
    a = CEO2_LATTICE_A
    ce_plane_y_A = top_y_A - _CE_O_PLANE_OFFSET_A
    lows = np.array([-half_width_A, top_y_A - depth_A - ce_plane_y_A, -thickness_A / 2])
    highs = np.array([half_width_A, top_y_A - ce_plane_y_A + 1e-3, thickness_A / 2])
    corners = np.array(
        [
            [x, y, z]
            for x in (lows[0], highs[0])
            for y in (lows[1], highs[1])
            for z in (lows[2], highs[2])
        ]
    )
    crystal = corners @ _CRYSTAL_TO_BEAM  # beam → crystal: R^T
    first = np.floor(crystal.min(axis=0) / a).astype(int) - 1
    last = np.ceil(crystal.max(axis=0) / a).astype(int) + 1
    grid = np.stack(
        np.meshgrid(*[np.arange(f, l_) for f, l_ in zip(first, last, strict=True)], indexing="ij"),
        axis=-1,
    ).reshape(-1, 1, 3)
    basis = np.concatenate([_FCC, _TETRA])  # 4 Ce then 8 O
    crystal_positions = ((grid + basis[None]) * a).reshape(-1, 3)
    beam = crystal_positions @ _CRYSTAL_TO_BEAM.T
    inside = np.all((beam >= lows) & (beam <= highs), axis=1)
    beam = beam[inside]
    beam[:, 1] += ce_plane_y_A
    symbols = np.tile(np.array(["Ce"] * len(_FCC) + ["O"] * len(_TETRA)), grid.shape[0])
    return beam, symbols[inside]


def _rotation_z(angle_deg: float) -> np.ndarray:
    """Rotation about the optical axis (z)."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _tilt(axis_deg: float, angle_deg: float) -> np.ndarray:
    """Rotation by ``angle_deg`` about an in-plane axis at ``axis_deg`` from x (Rodrigues)."""
    u = np.array([math.cos(math.radians(axis_deg)), math.sin(math.radians(axis_deg)), 0.0])
    theta = math.radians(angle_deg)
    k = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    return np.eye(3) + math.sin(theta) * k + (1 - math.cos(theta)) * (k @ k)
