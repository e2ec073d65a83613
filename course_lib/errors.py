"""The library's own exception: one clear sentence naming the problem and the fix."""


class CourseError(Exception):
    """Raised for every mistake a learner can act on (bad name, wrong size, broken file, NaN loss)."""


class DatasetUnavailable(CourseError):
    """A data set could not be found on disk nor downloaded."""


class CheckpointError(CourseError):
    """A checkpoint file is corrupted, incomplete, or belongs to another model."""


class TrainingDiverged(CourseError):
    """The training loss became NaN or infinite."""
