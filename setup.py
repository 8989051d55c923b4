"""Package layout only; every other setting (metadata, dependencies, package data) is in pyproject.toml.

The workflow stays where a clone runs it (``snakemake -s workflow/Snakefile``) and is shipped inside the package as
``antrax_pipe/workflow/`` (``package_dir`` maps it), so that an installed ``antrax-pipe`` runs from any folder.
pyproject.toml alone cannot say this: its package discovery (``[tool.setuptools.packages.find]``) and an explicit
package list exclude each other, and discovery does not see a folder mapped from outside ``antrax_pipe/``.
Namespace discovery: data folders (``app/static``, ``workflow/rules``, ...) are listed as packages too, which keeps
setuptools from warning that they are importable but not packaged.
"""

from setuptools import find_namespace_packages, setup

EXCLUDE = ["*.__pycache__", "*.__pycache__.*"]
packages = find_namespace_packages(include=["antrax_pipe", "antrax_pipe.*"], exclude=EXCLUDE)
packages += ["antrax_pipe.workflow"] + [
    f"antrax_pipe.workflow.{p}" for p in find_namespace_packages(where="workflow", exclude=["__pycache__", *EXCLUDE])
]

setup(packages=packages, package_dir={"antrax_pipe.workflow": "workflow"})
