"""taskadapt: parameter-efficient multitask dense prediction with vision-transformer adapters."""

__version__ = "0.1.0"
