"""Grid handling: axes, cell areas, conservative coarsening and regridding."""
from .cf import GridAxes, area_weights, bounds_from_centres, cell_bounds, find_axes
from .coarsen import coarse_bounds, coarsen
from .regrid import regrid

__all__ = ["GridAxes", "area_weights", "bounds_from_centres", "cell_bounds", "coarse_bounds", "coarsen", "find_axes",
           "regrid"]
