"""What mmsnn's test suite needs beyond pytest: reading the reference golden files."""
from .goldens import load_golden, pack_golden

__all__ = ['load_golden', 'pack_golden']
