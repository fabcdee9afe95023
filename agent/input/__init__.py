"""Remote input on the subscriber's PC: injecting the operator's mouse and keyboard events, and
yielding to the subscriber's own input (see :mod:`agent.input.inject`)."""
