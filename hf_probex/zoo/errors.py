"""The one error type of the zoo package."""


class ZooError(ValueError):
    """A problem with a zoo folder or request, phrased as one line saying what is wrong and what to do."""
