"""The `eventsourcing` library's KurrentDB persistence module
(eventsourcing-kurrentdb) running its README's dog-school example end to end:
aggregates saved and reloaded, notifications read back, optimistic
concurrency, snapshots, and a projection fed by a catch-up subscription."""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.persistence import IntegrityError
from eventsourcing.projection import ProjectionRunner
from eventsourcing.utils import get_topic

from es_dogschool import CountProjection, Dog, InMemoryMaterialiseView, TrainingSchool
from harness import CALL_TIMEOUT, Ctx, check, eq, true

T = CALL_TIMEOUT


def _env(ctx: Ctx, **extra: str) -> dict[str, str]:
    # As the adapter's README says: the application's PERSISTENCE_MODULE
    # (prefixed with its name, so that the projection's view stays in memory)
    # and KURRENTDB_URI, the client's connection string.
    return {"TRAININGSCHOOL_PERSISTENCE_MODULE": "eventsourcing_kurrentdb",
            "KURRENTDB_URI": ctx.target.url, **extra}


@check("eventsourcing_dog_school")
def eventsourcing_dog_school(ctx: Ctx) -> None:
    env = _env(ctx)
    ctx.step("TrainingSchool(env)")
    school = TrainingSchool(env=env)
    ctx.cleanup.append(school.close)
    eq(type(school.factory).__module__, "eventsourcing_kurrentdb.factory", "persistence module")
    name = f"Fido-{uuid.uuid4().hex[:8]}"
    dog_id = Dog.create_id(name)
    ctx.step(f"school.register({name!r})")
    n1 = school.register(name)
    ctx.step("school.add_trick(…) twice")
    n2 = school.add_trick(name, "roll over")
    n3 = school.add_trick(name, "play dead")
    true(n1 < n2 < n3, f"notification ids (commit positions) increase: {[n1, n2, n3]}")
    eq(school.get_dog_details(name), {"name": name, "tricks": ("roll over", "play dead")},
       "dog details")
    ctx.step("a new TrainingSchool(env) reloads the dog")
    school2 = TrainingSchool(env=env)
    ctx.cleanup.append(school2.close)
    eq(school2.get_dog_details(name), {"name": name, "tricks": ("roll over", "play dead")},
       "dog details after reconstructing the application")
    # The aggregate's stream as kurrentdbclient sees it.
    ctx.step(f"get_stream({str(dog_id)!r})")
    recorded = ctx.client.get_stream(str(dog_id), timeout=T)
    eq([(r.type, r.stream_position, r.commit_position) for r in recorded],
       [(get_topic(Dog.Registered), 0, n1), (get_topic(Dog.TrickAdded), 1, n2),
        (get_topic(Dog.TrickAdded), 2, n3)], "the aggregate's stream")
    # Notifications: the application's log, read from $all.
    ctx.step(f"recorder.select_notifications(start={n1}, limit=10)")
    notes = school.recorder.select_notifications(start=n1, limit=10)
    eq([(n.id, n.originator_id, n.originator_version, n.topic) for n in notes],
       [(n1, str(dog_id), 0, get_topic(Dog.Registered)),
        (n2, str(dog_id), 1, get_topic(Dog.TrickAdded)),
        (n3, str(dog_id), 2, get_topic(Dog.TrickAdded))], "notifications")
    eq(school.recorder.max_notification_id(), n3, "max_notification_id")
    eq([n.id for n in school.recorder.select_notifications(start=n1, limit=2,
                                                           inclusive_of_start=False)],
       [n2, n3], "notifications after a start, exclusive")
    # Optimistic concurrency: two applications change the same dog.
    ctx.step("two applications save conflicting changes")
    dog_a = school.repository.get(dog_id)
    dog_b = school2.repository.get(dog_id)
    dog_a.add_trick("sit")
    school.save(dog_a)
    dog_b.add_trick("beg")
    try:
        school2.save(dog_b)
    except IntegrityError:
        pass
    else:
        raise AssertionError("second conflicting save: expected IntegrityError, nothing raised")
    eq(school2.get_dog_details(name)["tricks"], ("roll over", "play dead", "sit"),
       "tricks after the conflict")


@check("eventsourcing_snapshots")
def eventsourcing_snapshots(ctx: Ctx) -> None:
    env = _env(ctx, IS_SNAPSHOTTING_ENABLED="y")
    school = TrainingSchool(env=env)
    ctx.cleanup.append(school.close)
    name = f"Rex-{uuid.uuid4().hex[:8]}"
    dog_id = Dog.create_id(name)
    ctx.step("register + 3 tricks")
    school.register(name)
    for trick in ("sit", "stay", "heel"):
        school.add_trick(name, trick)
    ctx.step("take_snapshot(dog_id, version=2)")
    school.take_snapshot(dog_id, version=2)
    assert school.snapshots is not None
    snaps = list(school.snapshots.get(dog_id))
    eq([s.originator_version for s in snaps], [2], "snapshot versions")
    ctx.step("repository.get(dog_id, version=3) (snapshot + one event)")
    dog = school.repository.get(dog_id, version=3)
    eq((dog.version, dog.tricks), (3, ["sit", "stay", "heel"]), "dog at version 3")
    ctx.step("take_snapshot(dog_id)")
    school.take_snapshot(dog_id)
    eq([s.originator_version for s in school.snapshots.get(dog_id)], [2, 3], "snapshot versions")
    school.add_trick(name, "fetch")
    ctx.step("a new application reloads from the latest snapshot")
    school2 = TrainingSchool(env=env)
    ctx.cleanup.append(school2.close)
    eq(school2.get_dog_details(name)["tricks"], ("sit", "stay", "heel", "fetch"),
       "tricks after reloading")


@check("eventsourcing_projection")
def eventsourcing_projection(ctx: Ctx) -> None:
    """The README's ProjectionRunner: a catch-up subscription to $all filtered
    by the projection's topics feeds a materialised view, stored events first,
    then live ones."""
    env = _env(ctx)
    school = TrainingSchool(env=env)
    ctx.cleanup.append(school.close)
    name = f"Lassie-{uuid.uuid4().hex[:8]}"
    school.register(name)
    school.add_trick(name, "sit")
    ctx.step("ProjectionRunner(TrainingSchool, CountProjection, InMemoryMaterialiseView)")
    with ProjectionRunner(application_class=TrainingSchool, projection_class=CountProjection,
                          view_class=InMemoryMaterialiseView, env=env) as runner:
        view: Any = runner.projection.view
        ctx.step("view.wait(max_notification_id)")
        view.wait(application_name=school.name,
                  notification_id=school.recorder.max_notification_id(), timeout=10)
        dogs, tricks = view.get_dog_counter(), view.get_trick_counter()
        true(dogs >= 1 and tricks >= 1, f"stored events counted: {dogs} dogs, {tricks} tricks")
        ctx.step("add_trick (live) and view.wait(its notification id)")
        n = school.add_trick(name, "stay")
        view.wait(application_name=school.name, notification_id=n, timeout=10)
        eq((view.get_dog_counter(), view.get_trick_counter()), (dogs, tricks + 1),
           "counters after one live trick")
        school.register(f"{name}-pup")
        n = school.add_trick(f"{name}-pup", "roll")
        view.wait(application_name=school.name, notification_id=n, timeout=10)
        eq((view.get_dog_counter(), view.get_trick_counter()), (dogs + 1, tricks + 2),
           "counters after one more dog and trick")
