"""Authentication and authorisation: users, password hashing, sessions, roles, site scoping, audit."""
