"""The edge's DICOM side: Storage/Query SCP, instance store, study completion, STOW-RS forwarding, retention.

See docs/edge-dicom.md. Entry point for the edge service: edge.dicom.service.DicomService.
"""
