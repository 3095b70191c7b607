"""``offload servers`` (the registry: role, release, state, heartbeat age) and ``offload
retire --keep-release R`` (every server of another release stops claiming, finishes its
in-flight tasks and exits). Example::

    manage.py offload servers --all
    manage.py offload retire --keep-release 4f2a9c1e07b3 --role async
"""


def listing(command, *, all, **_):
    from offload.dashboard import queries

    command.stdout.write(f"{'server':<32}{'role':<12}{'release':<14}{'state':<10}{'heartbeat':>10}")
    for s in queries.servers(include_gone=all):
        command.stdout.write(f"{s['id']:<32}{s['role']:<12}{s['release']:<14}"
                             f"{s['state']:<10}{s['heartbeat_age_s']:>9.0f}s")


def retire(command, *, keep_release, role, **_):
    from offload import registry

    ids = registry.retire(keep_release=keep_release, role=role)
    command.stdout.write(f"Retiring {len(ids)} server(s) not on release {keep_release!r}"
                         + (f": {', '.join(ids)}" if ids else "") + ". They stop claiming now, "
                         "finish their in-flight tasks and exit.")
