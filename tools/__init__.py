"""Maintainer scripts of the course (run from the repository root as `python -m tools.NAME`).

Annotations: as in `course_lib`, where they help a reader; these scripts are not an API.
"""
