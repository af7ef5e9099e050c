"""The node server: FastAPI app (REST API, DICOMweb, slide viewer) and the DIMSE SCP."""
