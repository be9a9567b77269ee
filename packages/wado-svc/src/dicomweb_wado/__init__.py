"""WADO-RS and QIDO-RS service of the DICOMweb Ingestion Service."""
