"""Muon: Newton–Schulz, Polar Express and the Muon optimizer (chapter 8). Being written."""

__all__: list[str] = []
