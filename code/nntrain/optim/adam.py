"""Adam and AdamW (chapter 2 adaptive methods; used by Muon's auxiliary group in chapter 8). Being written."""

__all__: list[str] = []
