"""DICOMweb Ingestion Service core: everything the STOW and WADO apps share."""

from __future__ import annotations

__version__ = "0.1.0"
