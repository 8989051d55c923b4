"""Readers and writers, one module per anTraX file kind. The domain classes live in :mod:`antrax_pipe.model`."""
