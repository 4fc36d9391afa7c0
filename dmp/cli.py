"""`dmp`: run the platform locally, and operate a local or deployed stack."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmp.api_keys import PartnerApiKeys
from dmp.local import StackTarget
from dmp.targets import TargetError, resolve

if TYPE_CHECKING:
    from functions.core.storage.partners import PartnerProfile

SYNC_URL_HELP = (
    "the partner's outbound sync URL: https:// only, macros {uid}, {gdpr}, {gdpr_consent} "
    "(filled URL-encoded) after the host"
)


def _add_target(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--local", action="store_true", help="the stack of `dmp serve` (./.dmp/local.json)")
    group.add_argument("--stack", metavar="NAME", help="a deployed stack, found through its CloudFormation outputs")


def _definition_files(paths: Sequence[str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        candidates = (
            sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json")) if path.is_dir() else [path]
        )
        for candidate in candidates:
            try:
                files[str(candidate)] = candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise SystemExit(f"{candidate}: cannot read: {error}") from None
    return files


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from dmp.local import LocalStack

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stack = LocalStack(args.host, args.port, moto_port=args.moto_port, log_requests=args.verbose)
    target = stack.start()
    state = stack.write_state()
    stack.stream_membership()
    if args.build_every:
        stack.build_every(args.build_every, shards=args.shards)
    print(f"DMP local stack: gateway {target.gateway_url}, AWS emulator {target.aws_endpoint_url}")
    print(f"state written to {state}; Ctrl-C to stop", flush=True)
    # `kill` (SIGTERM) stops it as cleanly as Ctrl-C: the state file goes with the stack.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        state.unlink(missing_ok=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from dmp.demo import run_demo

    return run_demo(visitors=args.visitors, seed=args.seed)


def _known_partners(partners_table: str) -> set[str]:
    from functions.core.storage.partners import PartnerStore

    return PartnerStore(partners_table).active_names()


def _known_sources(bucket_name: str) -> dict[str, Any] | None:
    """The stack's data sources (None when it has none: nothing to control), as builds
    read them; invalid source files there are reported and refuse the command."""
    from functions.builder.plan import known_sources
    from functions.core.storage.bucket import SegmentsBucket

    return known_sources(SegmentsBucket(bucket_name))


def cmd_segments_validate(args: argparse.Namespace) -> int:
    from functions.core.segments import DefinitionErrors, load_definitions

    files = _definition_files(args.paths)
    if not files:
        print("no definition files found", file=sys.stderr)
        return 2
    # With a stack, destinations must name partners that have an active key there, and
    # segments reading a source's traits only destinations that source allows.
    known = sources = None
    if args.local or args.stack:
        target = resolve(args.local, args.stack)
        known = _known_partners(target.partners_table)
        sources = _known_sources(target.bucket)
    try:
        definitions = load_definitions(files, known_partners=known, sources=sources)
    except DefinitionErrors as errors:
        return _print_problems(errors.problems, len(files))
    for definition in definitions:
        print(f"ok  {definition.id}  ({definition.name})")
    return 0


def cmd_segments_push(args: argparse.Namespace) -> int:
    from functions.core.layout import definition_key
    from functions.core.segments import DefinitionErrors, load_definitions
    from functions.core.storage.bucket import SegmentsBucket

    target = resolve(args.local, args.stack)
    bucket = SegmentsBucket(target.bucket)
    files = _definition_files(args.paths)
    try:
        sources = _known_sources(target.bucket)
        definitions = load_definitions(files, sources=sources)
        # The pushed set must also stand beside what the bucket already holds.
        pushed = {definition_key(d.id) for d in definitions}
        existing = {k: v for k, v in bucket.definition_files().items() if k not in pushed}
        load_definitions({**existing, **files})
    except DefinitionErrors as errors:
        return _print_problems(errors.problems, len(files))
    known = _known_partners(target.partners_table)
    for definition in definitions:
        document = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
        bucket.put_definition(definition.id, document)
        print(f"pushed {definition.id}")
        unknown = sorted(set(definition.destinations) - known)
        if unknown:
            # Segments are often defined before a partner is onboarded: say so, don't refuse.
            print(f"  note: no active key yet for {', '.join(unknown)}; they see nothing until added", file=sys.stderr)
    return 0


def cmd_segments_preview(args: argparse.Namespace) -> int:
    from dmp.preview import preview
    from functions.builder.plan import build_time_now
    from functions.core.segments import DefinitionErrors, load_definitions
    from functions.core.storage.bucket import SegmentsBucket
    from functions.core.times import parse_time

    target = resolve(args.local, args.stack)
    files = _definition_files(args.paths)
    if not files:
        print("no definition files found", file=sys.stderr)
        return 2
    try:
        definitions = load_definitions(files, sources=_known_sources(target.bucket))
    except DefinitionErrors as errors:
        return _print_problems(errors.problems, len(files))
    stores = target.build_stores()
    result = preview(
        definitions,
        events=stores.events,
        bucket=SegmentsBucket(target.bucket),
        suppressed=stores.suppressed_visitors(),
        at=parse_time(args.at) if args.at else build_time_now(),
        shards=args.shards,
    )
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        for line in result.lines():
            print(line)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from dmp.report import ReportMissing, save_report
    from functions.core.storage.bucket import SegmentsBucket

    target = resolve(args.local, args.stack)
    try:
        build_id = save_report(SegmentsBucket(target.bucket), Path(args.out), args.build)
    except ReportMissing as error:
        print(error, file=sys.stderr)
        return 1
    print(f"report of build {build_id} saved to {args.out}")
    return 0


def _print_problems(problems: Sequence[object], files: int) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(problems)} problem(s) in {files} file(s)", file=sys.stderr)
    return 1


def cmd_sources_validate(args: argparse.Namespace) -> int:
    from functions.core.segments import DefinitionErrors
    from functions.core.sources import load_sources

    files = _definition_files(args.paths)
    if not files:
        print("no source files found", file=sys.stderr)
        return 2
    try:
        sources = load_sources(files)
    except DefinitionErrors as errors:
        return _print_problems(errors.problems, len(files))
    for source in sources:
        print(f"ok  {source.id}  ({source.kind}-party, ids: {source.id_type}, traits: {', '.join(source.traits)})")
    return 0


def cmd_sources_push(args: argparse.Namespace) -> int:
    from functions.core.layout import source_key
    from functions.core.segments import DefinitionErrors, load_definitions
    from functions.core.sources import load_sources
    from functions.core.storage.bucket import SegmentsBucket

    target = resolve(args.local, args.stack)
    bucket = SegmentsBucket(target.bucket)
    files = _definition_files(args.paths)
    if not files:
        print("no source files found", file=sys.stderr)
        return 2
    try:
        sources = load_sources(files)
        pushed = {source_key(s.id) for s in sources}
        existing = {k: v for k, v in bucket.source_files().items() if k not in pushed}
        every = load_sources({**existing, **files})
        # Narrowing a source's allowed destinations must not leave a published segment
        # breaking the data-use control: the next build would refuse it.
        load_definitions(bucket.definition_files(), sources={s.id: s for s in every})
    except DefinitionErrors as errors:
        return _print_problems(errors.problems, len(files))
    for source in sources:
        bucket.put_json(source_key(source.id), source.to_document())
        print(f"pushed {source.id}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from dmp.imports import NotImported, import_file

    target = resolve(args.local, args.stack)
    try:
        report = import_file(Path(args.file), args.source, target, wait_seconds=0 if args.no_wait else args.wait)
    except NotImported as error:
        print(error, file=sys.stderr)
        return 2
    if report is None:
        print("uploaded; the importer's report is not there yet (see the key above)")
        return 0
    for rejection in report.get("rejected", []):
        print(f"{args.file}:{rejection['line']}: {rejection['error']}", file=sys.stderr)
    if report.get("status") == "failed":
        print(f"import failed: {report.get('error')}", file=sys.stderr)
        return 1
    print(
        f"imported {report['rows']} row(s): {report['stored']} stored, {report['unresolved']} unresolved, "
        f"{report.get('suppressed', 0)} suppressed, {report.get('rejected_rows', len(report['rejected']))} rejected"
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from functions.builder.build import build
    from functions.builder.plan import build_time_now
    from functions.core.segments import DefinitionErrors
    from functions.core.times import parse_time

    target = resolve(args.local, args.stack)
    at = parse_time(args.at) if args.at else build_time_now()
    try:
        result = build(target.build_stores(), at, args.shards, retention_seconds=target.retention_seconds)
    except DefinitionErrors as errors:
        for problem in errors.problems:
            print(problem, file=sys.stderr)
        print("build refused: the published build is unchanged", file=sys.stderr)
        return 1
    state = "published" if result.published else "written (a newer build stays published)"
    if result.repeated:
        state = "already published"
    manifest = result.manifest
    print(f"build {manifest.build_id} evaluated at {manifest.evaluated_at}: {state}")
    for segment in manifest.segments:
        print(f"  {segment.id:<45} {segment.size:>8}")
    if result.membership_changes is not None:
        print(f"membership changes: {result.membership_changes}")
    for partner, export in sorted(result.exports.items()):
        print(f"export {partner}: full {export.full_rows} rows, delta {export.delta_rows} rows")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from dmp.backfill import ingest_file

    target = resolve(args.local, args.stack)
    report = ingest_file(Path(args.file), target, retention_days=args.retention_days)
    for line, reason in report.problems:
        print(f"{args.file}:{line}: {reason}", file=sys.stderr)
    print(f"stored {report.stored} event(s), skipped {len(report.problems)} line(s)")
    return 0 if report.stored or not report.problems else 1


def _usage_plan(target: StackTarget) -> str:
    if not target.lookup_usage_plan_id:
        raise TargetError("this stack has no output 'LookupUsagePlanId': deploy the current version first")
    return target.lookup_usage_plan_id


def _sync_state(profile: PartnerProfile | None) -> str:
    if profile is None or not profile.sync:
        return "sync off" + (f" (template kept: {profile.sync_url})" if profile and profile.sync_url else "")
    return f"sync on  {profile.sync_url or '(inbound only: no template)'}"


def _sync_profile(args: argparse.Namespace, existing: PartnerProfile | None, now: str) -> PartnerProfile | None:
    """The partner's profile as the sync options of `add` or `update` change it; None when
    they change nothing. A template given turns sync on unless `--no-sync` says otherwise."""
    from functions.core.storage.partners import PartnerProfile

    sync: bool | None = getattr(args, "sync", None)
    sync_url: str | None = getattr(args, "sync_url", None)
    clear_url: bool = getattr(args, "no_sync_url", False)
    if sync is None and sync_url is None and not clear_url:
        return None
    profile = existing or PartnerProfile(args.name)
    return PartnerProfile(
        name=args.name,
        sync=sync if sync is not None else (True if sync_url is not None else profile.sync),
        sync_url=None if clear_url else (sync_url if sync_url is not None else profile.sync_url),
        updated_at=now,
    )


def _check_sync_url(args: argparse.Namespace) -> str | None:
    """Why `--sync-url` cannot be registered, or None (also when it is not given)."""
    from functions.core.sync import InvalidTemplate, check_template

    template = getattr(args, "sync_url", None)
    if template is None:
        return None
    try:
        check_template(template)
    except InvalidTemplate as error:
        return f"invalid --sync-url ({error.reason}): {error}"
    return None


def cmd_partners(args: argparse.Namespace) -> int:
    from functions.core.partners import PARTNER_NAME_CHARS, is_partner_name, key_hash, new_key
    from functions.core.storage.partners import PartnerStore

    if args.action in ("add", "update"):
        # Checked before the stack is even read: a refused command changes nothing.
        if not is_partner_name(args.name):
            print(f"a partner name matches {PARTNER_NAME_CHARS}", file=sys.stderr)
            return 2
        problem = _check_sync_url(args)
        if problem:
            print(problem, file=sys.stderr)
            return 2
    target = resolve(args.local, args.stack)
    store = PartnerStore(target.partners_table)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    if args.action == "add":
        # The sync registration first: should it fail, no key was made and lost unseen.
        profile = _sync_profile(args, store.profile(args.name), now)
        if profile is not None:
            store.put_profile(profile)
            print(f"partner {args.name}: {_sync_state(profile)}")
        key = new_key()
        hashed = key_hash(key)
        if args.stack:
            # The API key first: should API Gateway refuse it, no partner key exists that
            # every request would answer with 403.
            api_keys = PartnerApiKeys(_usage_plan(target))
            api_key_id = api_keys.create(args.name, hashed)
            try:
                store.add(hashed, args.name, now)
            except Exception:
                api_keys.delete(api_key_id)
                raise
            print(f"API key {api_key_id} added to usage plan {api_keys.usage_plan_id}")
        else:
            store.add(hashed, args.name, now)
        print(f"partner {args.name} added; the key is shown once, store it now:")
        print(key)
        return 0
    if args.action == "update":
        existing = store.profile(args.name)
        if existing is None and args.name not in {p.name for p in store.list()}:
            print(f"no partner {args.name!r}: add it first with `dmp partners add`", file=sys.stderr)
            return 1
        profile = _sync_profile(args, existing, now)
        if profile is None:
            print("nothing to update: give --sync-url, --no-sync-url, --sync or --no-sync", file=sys.stderr)
            return 2
        store.put_profile(profile)
        print(f"partner {args.name}: {_sync_state(profile)}")
        return 0
    if args.action == "revoke":
        revoked = store.revoke_keys(args.name, now)
        if not revoked:
            print(f"no active key for partner {args.name!r}", file=sys.stderr)
            return 1
        print(f"revoked {len(revoked)} key(s) of {args.name}")
        if args.stack:
            api_keys = PartnerApiKeys(_usage_plan(target))
            print(f"disabled {api_keys.disable(revoked)} API key(s) in usage plan {api_keys.usage_plan_id}")
        return 0
    profiles = {profile.name: profile for profile in store.profiles()}
    keys = store.list()
    for partner in keys:
        state = "active" if partner.active else f"revoked {partner.revoked_at}"
        print(
            f"{partner.name:<24} {partner.key_hash[:12]}  created {partner.created_at}  {state}  "
            f"{_sync_state(profiles.get(partner.name))}"
        )
    for name in sorted(set(profiles) - {p.name for p in keys}):
        print(f"{name:<24} {'(no key)':<12}  {_sync_state(profiles[name])}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from dmp.backfill import replay_deferred

    target = resolve(args.local, args.stack)
    if not target.fallback_queue_url:
        print("this stack has no fallback queue", file=sys.stderr)
        return 2
    written, duplicates, messages = replay_deferred(target)
    print(f"replayed {messages} message(s): {written} hit(s) written, {duplicates} already stored")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from dmp.privacy import PrivacyError, erase

    target = resolve(args.local, args.stack)
    try:
        records = erase(args.uids, target)
    except PrivacyError as error:
        print(error, file=sys.stderr)
        return 2
    for record in records:
        deleted = ", ".join(f"{name} {count}" for name, count in record.deleted.items())
        print(f"erased {record.visitor_sha256[:12]}…: {deleted}")
    print(f"erased {len(records)} visitor(s); suppressed for good; audit records under audit/")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from dmp.privacy import audit_records
    from functions.core.times import parse_time

    target = resolve(args.local, args.stack)
    since = parse_time(args.since) if args.since else None
    for record in audit_records(target, since):
        print(json.dumps(record, sort_keys=True))
    return 0


def cmd_visitor_show(args: argparse.Namespace) -> int:
    from dmp.privacy import PrivacyError, print_json, visitor_report

    target = resolve(args.local, args.stack)
    try:
        print_json(visitor_report(args.uid, target))
    except PrivacyError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dmp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the whole platform locally on an embedded AWS emulator")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="gateway port (0 picks a free one)")
    serve.add_argument("--moto-port", type=int, default=0, help="AWS emulator port (0 picks a free one)")
    serve.add_argument("--build-every", type=float, metavar="S", help="run a segment build every S seconds")
    serve.add_argument("--shards", type=int, default=1, help="shards of the scheduled builds")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.set_defaults(func=cmd_serve)

    demo = commands.add_parser("demo", help="local stack + a shop's campaign traffic + build + partner lookups")
    demo.add_argument("--visitors", type=int, default=120)
    demo.add_argument("--seed", type=int, default=2026)
    demo.set_defaults(func=cmd_demo)

    segments = commands.add_parser("segments", help="segment definitions").add_subparsers(
        dest="segments_command", required=True
    )
    validate = segments.add_parser("validate", help="check definition files (YAML or JSON), or folders of them")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    _add_target(validate)  # optional here: with a stack, destinations are checked against its partners
    validate.set_defaults(func=cmd_segments_validate)
    push = segments.add_parser("push", help="validate and upload definitions to a stack")
    push.add_argument("paths", nargs="+", metavar="PATH")
    _add_target(push)
    push.set_defaults(func=cmd_segments_push)
    preview = segments.add_parser(
        "preview", help="the exact size definitions would have now (or --at), and their overlap with published ones"
    )
    preview.add_argument("paths", nargs="+", metavar="PATH")
    preview.add_argument("--at", metavar="ISO8601", help="evaluation time (default: now)")
    preview.add_argument("--shards", type=int, default=4, help="parallel-scan shards, run on threads")
    preview.add_argument("--json", action="store_true", help="print the figures as JSON")
    _add_target(preview)
    preview.set_defaults(func=cmd_segments_preview)

    sources = commands.add_parser("sources", help="data-source definitions (second- and third-party data)")
    source_commands = sources.add_subparsers(dest="sources_command", required=True)
    source_validate = source_commands.add_parser("validate", help="check source files (YAML or JSON), or folders")
    source_validate.add_argument("paths", nargs="+", metavar="PATH")
    source_validate.set_defaults(func=cmd_sources_validate)
    source_push = source_commands.add_parser("push", help="validate and upload source definitions to a stack")
    source_push.add_argument("paths", nargs="+", metavar="PATH")
    _add_target(source_push)
    source_push.set_defaults(func=cmd_sources_push)

    importing = commands.add_parser(
        "import", help="upload a source's file to imports/<source>/, as a dropped file, and show its report"
    )
    importing.add_argument("file", metavar="FILE", help="<name>.csv or <name>.jsonl, optionally .gz")
    importing.add_argument("--source", required=True, metavar="ID")
    importing.add_argument("--wait", type=float, default=120, metavar="S", help="seconds to wait for the report")
    importing.add_argument("--no-wait", action="store_true", help="upload and return")
    _add_target(importing)
    importing.set_defaults(func=cmd_import)

    build = commands.add_parser("build", help="evaluate every segment now (or --at) and publish the build")
    build.add_argument("--at", metavar="ISO8601", help="evaluation time (default: now)")
    build.add_argument("--shards", type=int, default=1, help="parallel-scan shards")
    _add_target(build)
    build.set_defaults(func=cmd_build)

    ingest = commands.add_parser("ingest", help="backfill events from a JSON-lines file")
    ingest.add_argument("file", metavar="FILE.jsonl")
    ingest.add_argument("--retention-days", type=int, default=None, help="default: the stack's retention")
    _add_target(ingest)
    ingest.set_defaults(func=cmd_ingest)

    partners = commands.add_parser("partners", help="partner keys of the lookup API").add_subparsers(
        dest="action", required=True
    )
    add = partners.add_parser("add", help="create a key (printed once); optionally register the partner for ID sync")
    add.add_argument("name")
    add.add_argument("--sync", action="store_const", const=True, help="the partner may sync ids with us (/sync)")
    add.add_argument("--sync-url", metavar="TEMPLATE", help=SYNC_URL_HELP + "; implies --sync")
    _add_target(add)
    add.set_defaults(func=cmd_partners)
    update = partners.add_parser("update", help="change a partner's ID sync registration")
    update.add_argument("name")
    url = update.add_mutually_exclusive_group()
    url.add_argument("--sync-url", metavar="TEMPLATE", help=SYNC_URL_HELP + "; implies --sync unless --no-sync")
    url.add_argument("--no-sync-url", action="store_true", help="remove the template (no outbound sync)")
    enabled = update.add_mutually_exclusive_group()
    enabled.add_argument("--sync", dest="sync", action="store_const", const=True, help="allow ID sync")
    enabled.add_argument("--no-sync", dest="sync", action="store_const", const=False, help="refuse ID sync")
    _add_target(update)
    update.set_defaults(func=cmd_partners)
    revoke = partners.add_parser("revoke", help="revoke every key of a partner")
    revoke.add_argument("name")
    _add_target(revoke)
    revoke.set_defaults(func=cmd_partners)
    listing = partners.add_parser("list", help="partners, their keys' state and their ID sync registration")
    _add_target(listing)
    listing.set_defaults(func=cmd_partners)

    replay = commands.add_parser("replay", help="write the hits deferred to the fallback queue")
    _add_target(replay)
    replay.set_defaults(func=cmd_replay)

    erase = commands.add_parser(
        "erase", help="erase visitors everywhere (events, traits, membership, builds, old versions) and suppress them"
    )
    erase.add_argument("uids", nargs="+", metavar="UID")
    _add_target(erase)
    erase.set_defaults(func=cmd_erase)

    audit = commands.add_parser(
        "audit", help="the audit records of opt-outs and erasures, oldest first, one JSON a line"
    )
    audit.add_argument("--since", metavar="ISO8601", help="only records at or after this time")
    _add_target(audit)
    audit.set_defaults(func=cmd_audit)

    visitor = commands.add_parser("visitor", help="a visitor's data").add_subparsers(
        dest="visitor_command", required=True
    )
    show = visitor.add_parser("show", help="everything held about a visitor, as JSON (a subject access request)")
    show.add_argument("uid", metavar="UID")
    _add_target(show)
    show.set_defaults(func=cmd_visitor_show)

    report = commands.add_parser("report", help="save a build's report page (sizes, overlaps, reach, mixes)")
    report.add_argument("--build", metavar="ID", help="the build (default: the latest)")
    report.add_argument("--out", required=True, metavar="FILE", help="where to write the HTML page")
    _add_target(report)
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: Any = args.func(args)
    except TargetError as error:
        print(f"dmp: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
