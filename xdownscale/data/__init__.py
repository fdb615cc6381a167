"""Training data: pairs, normalisation, covariates and patch streaming."""
from .covariates import covariate_stats, fold_covariates
from .normalize import fit_stats, scadd_bounds
from .pairs import Pair, coarse_field, coarsen_block, make_pair
from .patches import PatchDataset, default_samples_per_epoch

__all__ = ["Pair", "PatchDataset", "coarse_field", "coarsen_block", "covariate_stats", "default_samples_per_epoch",
           "fit_stats", "fold_covariates", "make_pair", "scadd_bounds"]
