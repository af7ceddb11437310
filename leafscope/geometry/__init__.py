"""Second-order geometry of the data information metric G (``docs/geometry.md``).

G is the pull-back of the Fisher–Rao metric by ``p`` (of the Euclidean metric of R^C by
``q = 2√p``). :mod:`~leafscope.geometry.frame`: the map q and the oriented SVD frame of
``A = Dq``; :mod:`~leafscope.geometry.curvature`: the transverse sectional curvature, the
integrability tensor of ``D = Im G`` and the principal curvatures of the kernel leaves,
matrix-free; :mod:`~leafscope.geometry.reference`: dense routes that check them on small models.
"""

from leafscope.geometry.curvature import (
    FISHER_RAO_CURVATURE,
    IntegrabilityResult,
    LeafGeometry,
    PrincipalCurvatures,
    integrability_tensor,
    leaf_geometry,
    leaf_principal_curvatures,
    point_seeds,
    random_planes,
    transverse_sectional_curvature,
)
from leafscope.geometry.frame import LeafFrame, leaf_frame, sqrt_probability

__all__ = [
    "FISHER_RAO_CURVATURE",
    "IntegrabilityResult",
    "LeafFrame",
    "LeafGeometry",
    "PrincipalCurvatures",
    "integrability_tensor",
    "leaf_frame",
    "leaf_geometry",
    "leaf_principal_curvatures",
    "point_seeds",
    "random_planes",
    "sqrt_probability",
    "transverse_sectional_curvature",
]
