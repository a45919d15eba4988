"""One module per GATT health profile: its layout table, measurement dataclass(es), parse/encode and readings."""
