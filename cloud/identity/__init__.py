"""Patient identity protection: field encryption (AES-GCM, versioned keys), blind indexes, the patients registry."""
