"""Many images: manifest, output directory, Ray workers, scheduler and progress display.

Knows Ray and the engine, not click.
"""
