"""Speed and cost measurements of the course (run from the repository root as `python -m benchmarks.NAME`).

Annotations: as in `course_lib`, where they help a reader; these scripts are not an API.
"""
