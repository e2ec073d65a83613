"""The course machinery beside the library: the exercise checks and the autograder.

    coursework.checks      instant feedback for the graded exercises (one module per lesson)
    coursework.notebooks   preparing a submission: its reference and the reference's check cells
    coursework.checkcell   the fresh state (grad mode, dtype, random state) each graded check runs in
    coursework.sandbox     the throwaway bubblewrap sandbox one submission's kernel runs in, and the checks' snapshot
    coursework.kernel      the grading kernel's launcher: limits, the import path, then an IPython kernel
    coursework.executor    the separate process that runs a notebook in a fresh kernel
    coursework.grade       the autograder's command line (`pixelcnn-grade`) and its reports

It imports `course_lib`; `course_lib` never imports it.

Annotations: every public function and method of the grader (all modules above but `checks`) annotates
its return type, since instructors' scripts call them (tests/test_layout.py holds it). The checks take a
learner's object, whatever it is, and say in their docstrings what they expect of it.
"""
