"""DICOMweb at the cloud: the STOW-RS receiver for edge uploads and its filesystem object store.

See docs/edge-dicom.md. Wiring: `cloud.dicomweb.stow.install(app, store=FileObjectStore(settings.dicom.store_dir))`.
"""
