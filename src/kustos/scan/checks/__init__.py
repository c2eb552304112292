"""Check modules; each exports CHECKS."""
