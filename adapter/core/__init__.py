"""The pure core: immutable values in, values out. No I/O, no clock, no globals."""
