"""The package version: its own module, so that any layer can name the code version without importing the
package facade (``antrax_pipe/__init__.py``), which sits above them all."""

__version__ = "0.1.0"
