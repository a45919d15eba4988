"""Consultation recordings in the cloud: the edges' sealed uploads, stored encrypted, served to participants.

The edge seals a finished recording (edge/video/sealing.py: AES-256-GCM in chunks under a per-recording key,
the key wrapped for the cloud's key) and uploads it signed (upload.py). The cloud checks every chunk,
re-wraps the recording key under the identity key ring, keeps the sealed bytes as they came (store.py) and
decrypts on the fly for a consultation's participants (routes.py). docs/video.md, "Recording".
"""
