"""User management for admins and expert profiles (specialties, ICD-10 expertise, title, duty status)."""
