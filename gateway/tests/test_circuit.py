"""The circuit's states, driven by calls' outcomes, readiness checks and a clock of the test's."""

from collections.abc import Callable

import pytest

from gateway_service.circuit import Admission, Circuit, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def circuit(clock: Clock) -> Circuit:
    """Opens after 3 failures in a row, for 10 s, then lets 2 trial calls through at once."""
    return Circuit(failures_to_open=3, cooldown=10.0, trial_calls=2, clock=clock)


def open_it(circuit: Circuit) -> None:
    for _ in range(3):
        assert circuit.admit() is Admission.CALL
        circuit.failed()
    assert circuit.current_state() is CircuitState.OPEN


def open_it_until_its_cooldown_is_over(circuit: Circuit, clock: Clock) -> None:
    open_it(circuit)
    clock.now += 10


def test_a_closed_circuit_lets_every_call_through(circuit: Circuit) -> None:
    assert [circuit.admit() for _ in range(100)] == [Admission.CALL] * 100
    assert circuit.current_state() is CircuitState.CLOSED


def test_failures_in_a_row_open_it_and_an_answer_between_them_starts_the_count_again(
    circuit: Circuit,
) -> None:
    for _ in range(2):
        circuit.failed()
    circuit.succeeded()
    for _ in range(2):
        circuit.failed()
    assert circuit.current_state() is CircuitState.CLOSED

    circuit.failed()

    assert circuit.current_state() is CircuitState.OPEN
    assert circuit.admit() is Admission.REFUSED


def test_an_open_circuit_refuses_calls_until_its_cooldown_is_over(
    circuit: Circuit, clock: Clock
) -> None:
    open_it(circuit)

    clock.now += 9.2
    refused = circuit.admit()
    retry_after = circuit.retry_after()
    clock.now += 0.8
    after_cooldown = circuit.admit()

    assert (refused, retry_after) == (Admission.REFUSED, 1)
    assert after_cooldown is Admission.TRIAL
    assert circuit.current_state() is CircuitState.HALF_OPEN


@pytest.mark.parametrize(
    ("report", "seconds", "at_the_start", "then"),
    [
        pytest.param(
            Circuit.retry_after, 2.5, 10, 8, id="retry-after-is-the-rest-in-whole-seconds"
        ),
        pytest.param(
            Circuit.current_state,
            10,
            CircuitState.OPEN,
            CircuitState.HALF_OPEN,
            id="its-current-state-is-half-open-past-the-cooldown",
        ),
    ],
)
def test_what_an_open_circuit_reports_as_its_cooldown_passes(
    circuit: Circuit,
    clock: Clock,
    report: Callable[[Circuit], object],
    seconds: float,
    at_the_start: object,
    then: object,
) -> None:
    open_it(circuit)
    reported_at_the_start = report(circuit)
    clock.now += seconds

    assert (reported_at_the_start, report(circuit)) == (at_the_start, then)


def test_a_half_open_circuit_lets_only_its_trial_calls_through(
    circuit: Circuit, clock: Clock
) -> None:
    open_it_until_its_cooldown_is_over(circuit, clock)

    admissions = [circuit.admit() for _ in range(4)]

    assert admissions == [Admission.TRIAL, Admission.TRIAL, Admission.REFUSED, Admission.REFUSED]
    assert circuit.retry_after() == 1


def test_a_trial_that_gets_an_answer_closes_the_circuit(circuit: Circuit, clock: Clock) -> None:
    open_it_until_its_cooldown_is_over(circuit, clock)
    assert circuit.admit() is Admission.TRIAL

    circuit.succeeded()

    assert circuit.current_state() is CircuitState.CLOSED
    assert [circuit.admit() for _ in range(5)] == [Admission.CALL] * 5
    circuit.failed()
    circuit.failed()
    assert circuit.current_state() is CircuitState.CLOSED  # the count of failures started again


def test_a_trial_that_fails_opens_the_circuit_for_a_whole_new_cooldown(
    circuit: Circuit, clock: Clock
) -> None:
    open_it_until_its_cooldown_is_over(circuit, clock)
    assert circuit.admit() is Admission.TRIAL

    circuit.failed()

    assert circuit.current_state() is CircuitState.OPEN
    assert circuit.retry_after() == 10
    clock.now += 9.9
    assert circuit.admit() is Admission.REFUSED


def test_an_abandoned_trial_gives_its_place_to_the_next_call(
    circuit: Circuit, clock: Clock
) -> None:
    open_it_until_its_cooldown_is_over(circuit, clock)
    first, second = circuit.admit(), circuit.admit()
    assert circuit.admit() is Admission.REFUSED

    circuit.abandoned(first)

    assert circuit.admit() is Admission.TRIAL
    assert circuit.admit() is Admission.REFUSED
    assert circuit.current_state() is CircuitState.HALF_OPEN
    circuit.abandoned(Admission.CALL)  # a call admitted while closed holds no trial's place
    assert circuit.admit() is Admission.REFUSED
    assert second is Admission.TRIAL


def test_failures_of_calls_sent_before_it_opened_do_not_extend_the_cooldown(
    circuit: Circuit, clock: Clock
) -> None:
    open_it(circuit)
    clock.now += 5

    circuit.failed()

    assert circuit.retry_after() == 5


def test_an_answer_to_a_call_sent_before_it_opened_closes_it(circuit: Circuit) -> None:
    open_it(circuit)

    circuit.succeeded()

    assert circuit.admit() is Admission.CALL


def test_tripping_opens_it_at_once_from_any_state(circuit: Circuit, clock: Clock) -> None:
    circuit.trip()
    assert (circuit.current_state(), circuit.retry_after()) == (CircuitState.OPEN, 10)

    clock.now += 10
    assert circuit.admit() is Admission.TRIAL
    circuit.trip()
    assert (circuit.current_state(), circuit.retry_after()) == (CircuitState.OPEN, 10)


def test_ending_the_cooldown_lets_trial_calls_through_at_once(circuit: Circuit) -> None:
    open_it(circuit)

    circuit.end_cooldown()

    assert circuit.admit() is Admission.TRIAL


def test_ending_the_cooldown_of_a_closed_circuit_changes_nothing(circuit: Circuit) -> None:
    circuit.end_cooldown()

    assert circuit.current_state() is CircuitState.CLOSED
