# setuptools older than 61 (no PEP 621) reads setup.cfg through this file.
from setuptools import setup

setup()
