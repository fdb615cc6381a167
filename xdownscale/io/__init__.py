"""Writing downscaled fields: CF-1.8 metadata and atomic NetCDF/Zarr output."""
from .cf import add_bounds, add_cf_attrs, fine_coordinates, to_cf_dataset
from .store import write

__all__ = ["add_bounds", "add_cf_attrs", "fine_coordinates", "to_cf_dataset", "write"]
