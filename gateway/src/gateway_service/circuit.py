"""Each service's circuit: the gateway stops calling a service that keeps failing, and
tries it again after a cool-down.

The circuit is the gateway's memory of a service's recent failures, so that clients of a service
that does not answer get a 503 at once instead of each waiting out a timeout to learn it.

- closed: calls go through; each answer resets the count of consecutive failures, and
  `failures_to_open` of them in a row open the circuit;
- open: calls are refused for `cooldown` seconds;
- half-open: up to `trial_calls` calls go through at once; the first answer closes the circuit,
  a failure opens it for another cool-down.

An answer, whatever its status, is a success: the service answered, and a client waited no longer
than the service took. A readiness check of the service feeds the circuit too: one that finds
the service not answering opens it, one that finds it ready ends the cool-down early.

No lock: the gateway uses a circuit from one event loop, and no method awaits.
"""

import math
import time
from collections.abc import Callable
from enum import Enum, IntEnum


class CircuitState(IntEnum):
    """A circuit's state; the value is what the `gateway_downstream_circuit_state` gauge shows."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


class Admission(Enum):
    """Whether a call may go to the service, and as what."""

    CALL = "call"
    TRIAL = "trial"  # half-open: its outcome decides whether the circuit closes
    REFUSED = "refused"


class Circuit:
    """The circuit of one service (see the module's docstring)."""

    __slots__ = (
        "_clock",
        "_cooldown",
        "_cooldown_ends",
        "_failures",
        "_failures_to_open",
        "_trial_calls",
        "_trials",
        "state",
    )

    def __init__(
        self,
        failures_to_open: int,
        cooldown: float,
        trial_calls: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failures_to_open = failures_to_open
        self._cooldown = cooldown
        self._trial_calls = trial_calls
        self._clock = clock
        self.state = CircuitState.CLOSED
        self._failures = 0  # consecutive, while closed
        self._trials = 0  # trial calls in flight, while half-open
        self._cooldown_ends = 0.0

    def admit(self) -> Admission:
        """Whether a call may go now; a TRIAL must be reported (succeeded, failed or
        abandoned) when it ends."""
        if self.state is CircuitState.CLOSED:
            return Admission.CALL
        if self.state is CircuitState.OPEN:
            if self._clock() < self._cooldown_ends:
                return Admission.REFUSED
            self._half_open()
        if self._trials < self._trial_calls:
            self._trials += 1
            return Admission.TRIAL
        return Admission.REFUSED

    def retry_after(self) -> int:
        """Whole seconds after which a refused call may be admitted (at least 1)."""
        if self.state is CircuitState.OPEN:
            return max(1, math.ceil(self._cooldown_ends - self._clock()))
        return 1  # half-open: the trial calls in flight decide soon

    def succeeded(self) -> None:
        """A call got an answer."""
        if self.state is CircuitState.CLOSED:
            self._failures = 0
        else:
            self.state = CircuitState.CLOSED
            self._failures = 0
            self._trials = 0

    def failed(self) -> None:
        """A call got no answer: none in time, no connection, or a broken one."""
        if self.state is CircuitState.CLOSED:
            self._failures += 1
            if self._failures >= self._failures_to_open:
                self.trip()
        elif self.state is CircuitState.HALF_OPEN:
            self.trip()
        # Open: a call sent before the circuit opened; the cool-down runs from when it did.

    def abandoned(self, admission: Admission) -> None:
        """A call ended with neither an answer nor the service's failure (the client left,
        or the gateway had no free connection): a trial's place goes to the next call."""
        if admission is Admission.TRIAL and self.state is CircuitState.HALF_OPEN and self._trials:
            self._trials -= 1

    def trip(self) -> None:
        """Open the circuit now, for a whole cool-down."""
        self.state = CircuitState.OPEN
        self._cooldown_ends = self._clock() + self._cooldown
        self._failures = 0
        self._trials = 0

    def end_cooldown(self) -> None:
        """Let trial calls go now rather than at the end of the cool-down."""
        if self.state is CircuitState.OPEN:
            self._half_open()

    def current_state(self) -> CircuitState:
        """The state the next call would find: open becomes half-open once the cool-down is
        over (the circuit itself changes only when a call comes)."""
        if self.state is CircuitState.OPEN and self._clock() >= self._cooldown_ends:
            return CircuitState.HALF_OPEN
        return self.state

    def _half_open(self) -> None:
        self.state = CircuitState.HALF_OPEN
        self._trials = 0
