"""Generators: fill what the DW-mesh render cannot see.

``draft`` (a classical preview: seconds, no weights) and ``wan`` (Wan2.1-I2V-14B + EX-4D) share
the :class:`~ex4d_engine.generation.base.Generator` protocol.
"""
