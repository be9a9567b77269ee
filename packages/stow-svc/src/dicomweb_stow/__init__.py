"""STOW-RS service of the DICOMweb Ingestion Service."""
