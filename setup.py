"""Package discovery for the one distribution, ``edged`` (metadata is in pyproject.toml).

``drivers/`` and ``simulators/`` sit at the top of the repository but install as
``edged.drivers`` and ``edged.simulators``, so nothing generic lands in site-packages;
``config/`` installs as ``edged.examples`` (the demo reads its configuration there).
Every package under these folders is found, none is listed by hand: a module added to
any of them is in the wheel.
"""

from setuptools import find_packages, setup

ALIASES = {"edged.drivers": "drivers", "edged.simulators": "simulators"}

packages = find_packages(include=["edged", "edged.*"])
package_dir = {"edged": "edged", **ALIASES, "edged.examples": "config"}
for name, folder in ALIASES.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(where=folder)]
    for sub in find_packages(where=folder):
        package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
packages.append("edged.examples")  # the example configuration and lists, as package data

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={
        "edged.examples": ["*.toml", "*.csv", "*.conf"],
        "edged": ["py.typed"],
        "edged.central.console": ["templates/*.html", "static/*.css", "static/*.js"],
    },
)
