"""What the app writes: exports to the trainset (and their undo), validation marks, and the statistics over them —
the half of :class:`antrax_pipe.app.core.TrainsetApp` that changes files, kept apart as a mixin.

Exports go through :func:`antrax_pipe.trainset.export_images` (never over a different file, never one tracklet
under two labels) under the trainset's inter-process lock. The app remembers what each export wrote (names and
sha256), so :meth:`LabellingMixin.undo_export` removes exactly those files — only while they still hold what was
written — refreshes the manifest and, for "Correct + export as autoID", puts the earlier mark back.
"""

from __future__ import annotations

from typing import Any

from ..io.atomic import file_sha256
from ..io.locking import LockTimeoutError
from ..model import MARKS, ExportConflictError
from ..stats import label_kind
from ..trainset import export_images, export_lock, refresh_manifest, remove_exported
from .errors import AppError
from .review import marks_summary, plan_json, rate_json, read_plan

#: Exports the app can undo, newest last.
UNDO_DEPTH = 50
#: The mark "Correct + export as autoID" records, per kind of autoID (a non-ant label judged right is "not an ant").
CONFIRM_MARK: dict[str, str] = {"ID": "correct", "non-ant": "trueneg"}


class LabellingMixin:
    """Export, undo, marks and statistics of a :class:`~antrax_pipe.app.core.TrainsetApp` (uses its lookups)."""

    # set by TrainsetApp
    _undo: list[dict[str, Any]]
    annotator: str

    # ---------------------------------------------------------------------------------------------------------------
    # Export and undo

    def _frame_indices(self, ref: Any, frames: object) -> list[int]:
        if frames is None:
            return list(range(ref.n_images))
        if not isinstance(frames, list) or not frames or not all(isinstance(i, int) and not isinstance(i, bool)
                                                                for i in frames):
            raise AppError(400, "frames must be a non-empty list of image indices (integers)")
        bad = [i for i in frames if not 0 <= i < ref.n_images]
        if bad:
            raise AppError(400, f"frame index {bad[0]} out of range: tracklet {ref.name} has {ref.n_images} "
                                f"images (indices 0-{ref.n_images - 1})")
        return sorted(set(frames))

    def _export(self, ref: Any, lab: str, idx: list[int]) -> tuple[dict, dict]:
        """Export images ``idx`` of ``ref`` under ``lab``: (the answer, the undo entry)."""
        nums, mode = self.frame_numbers(ref)
        images = self.read_images(ref)
        ldir = self.examples_dir / lab
        try:
            # one inter-process lock over the check, the writes and the manifest: another app (another process)
            # exporting this tracklet under another label at the same moment gets the 409, not a second copy
            with export_lock(self.classdir):
                had_dir = ldir.is_dir()
                written, skipped = export_images(self.examples_dir, self.experiment.name, ref.name, lab,
                                                 images[idx], [nums[i] for i in idx])
                files = [(n, file_sha256(ldir / n)) for n in written]
                manifest = refresh_manifest(self.classdir) if written else None
                exported = self.existing_exports(ref)
        except ExportConflictError as exc:
            raise AppError(409, str(exc)) from None
        except LockTimeoutError as exc:
            raise AppError(503, str(exc)) from None
        entry = {"movie": ref.movie, "tracklet": ref.name, "label": lab, "files": files, "created_dir": not had_dir,
                 "mark": None}
        return ({"label": lab, "dir": str(ldir), "written": written, "skipped": skipped, "frame_mode": mode,
                 "manifest": manifest, "exported": exported}, entry)

    def _remember(self, entry: dict[str, Any]) -> None:
        if entry["files"] or entry["mark"] is not None:
            with self._lock:
                self._undo.append(entry)
                del self._undo[:-UNDO_DEPTH]

    def export(self, movie: object, tracklet: object, label: object, frames: object = None) -> dict:
        """Write the tracklet's images (all, or the 0-based ``frames``) to ``examples/<label>/`` as
        ``<expname>.<tracklet>.<frame>.png`` (white background, as read), then refresh the trainset manifest.

        Checked before anything is written: the label is in labels.csv; a file of the same name with *different*
        pixels is never overwritten (the export is refused); the same images already exported under another label
        are refused too (one image in two classes spoils training). Identical existing files are skipped."""
        ref = self.tracklet_ref(movie, tracklet)
        lab = self.parse_label(label)
        answer, entry = self._export(ref, lab, self._frame_indices(ref, frames))
        self._remember(entry)
        return {**answer, "can_undo": bool(self._undo)}

    def correct_and_export(self, movie: object, tracklet: object) -> dict:
        """One step for a right autoID: export all images under the autoID, then mark it correct (an ID) or not an
        ant (a non-ant label). Nothing is marked when the export is refused; one undo takes back both."""
        ref = self.tracklet_ref(movie, tracklet)
        a = self.autoids(ref.movie).get(ref.name)
        kind = label_kind(a.label, self.labels) if a else None
        if kind not in CONFIRM_MARK:
            raise AppError(409, f"tracklet {ref.name} has autoID {a.label if a else '(none)'!r}: only an ID or a "
                                f"non-ant label can be confirmed and exported as itself")
        lab = self.parse_label(a.label)
        previous = self._own_mark(ref.name)
        answer, entry = self._export(ref, lab, list(range(ref.n_images)))
        row = self._set_mark(ref.name, CONFIRM_MARK[kind], self._mark_fields(ref, a))
        entry["mark"] = {"previous": previous}
        self._remember(entry)
        return {**answer, "mark": row["mark"] if row else "", "can_undo": True}

    def undo_export(self) -> dict:
        """Take back the newest export this app made: remove the files it wrote (only while unchanged), refresh the
        manifest, put back the mark "Correct + export" replaced. 409 when there is nothing to undo."""
        with self._lock:
            entry = self._undo.pop() if self._undo else None
        if entry is None:
            raise AppError(409, "nothing to undo: this app has made no export since it started (or all were undone)")
        try:
            with export_lock(self.classdir):
                removed, kept = remove_exported(self.examples_dir, entry["label"], entry["files"],
                                                remove_empty_dir=entry["created_dir"])
                manifest = refresh_manifest(self.classdir)
        except LockTimeoutError as exc:
            with self._lock:
                self._undo.append(entry)
            raise AppError(503, str(exc)) from None
        mark = None
        if entry["mark"] is not None:
            prev = entry["mark"]["previous"]
            try:
                self.validation.restore(entry["tracklet"], self.annotator, prev)
            except LockTimeoutError as exc:
                raise AppError(503, str(exc)) from None
            mark = prev["mark"] if prev else ""
        ref = self.tracklet_ref(entry["movie"], entry["tracklet"])
        return {"movie": entry["movie"], "tracklet": entry["tracklet"], "label": entry["label"], "removed": removed,
                "kept": kept, "manifest": manifest, "exported": self.existing_exports(ref), "mark": mark,
                "can_undo": bool(self._undo)}

    # ---------------------------------------------------------------------------------------------------------------
    # Validation marks and stats

    def _own_mark(self, tracklet: str) -> dict[str, str] | None:
        """This annotator's mark of ``tracklet`` (or the one without annotator it would replace)."""
        rows = [r for r in self.validation.rows() if r["tracklet"] == tracklet]
        return (next((r for r in rows if r.get("annotator", "") == self.annotator), None)
                or next((r for r in rows if not r.get("annotator")), None))

    def _mark_fields(self, ref: Any, a: Any) -> dict[str, object]:
        """What a mark records besides the mark: movie, the autoID and classifier it judged, the tracklet's length."""
        return {"movie": ref.movie, "autoID": a.label, "n_frames": ref.n_images,
                "classifier_sha256": self.classifier(ref.movie)}

    def mark(self, movie: object, tracklet: object, mark: object) -> dict:
        """Save a validation mark (``correct``/``wrong``/``ambig`` for an ID, ``falseneg``/``trueneg`` for a non-ant
        autoID) at once, with the annotator, the autoID and the classifier it judges; ``None`` removes this
        annotator's mark of the tracklet."""
        ref = self.tracklet_ref(movie, tracklet)
        a = self.autoids(ref.movie).get(ref.name)
        if mark is None:
            self._set_mark(ref.name, None)
            return {"tracklet": ref.name, "mark": ""}
        if mark not in MARKS:
            raise AppError(400, f"mark must be one of {', '.join(MARKS)} (or null to remove), got {mark!r}")
        if a is None:
            raise AppError(409, f"tracklet {ref.name} has no autoID (movie {ref.movie} is not classified: "
                                f"{self.experiment.autoids_file(ref.movie)} "
                                f"{'has no row for it' if self.is_classified(ref.movie) else 'does not exist'}); "
                                f"there is nothing to validate")
        allowed = self.allowed_marks(a.label)
        if mark not in allowed:
            raise AppError(409, f"mark {mark!r} does not apply to autoID {a.label!r} of {ref.name} (allowed: "
                                f"{', '.join(allowed) or 'none — only IDs and non-ant labels are validated'})")
        row = self._set_mark(ref.name, str(mark), self._mark_fields(ref, a))
        return {"tracklet": ref.name, "mark": row["mark"] if row else "", "annotator": self.annotator}

    def _set_mark(self, tracklet: str, mark: str | None, fields: dict | None = None) -> dict | None:
        """:meth:`ValidationFile.set` (locked against other processes); a lock held too long is a 503, not a 500."""
        try:
            return self.validation.set(tracklet, mark, fields, annotator=self.annotator)
        except LockTimeoutError as exc:
            raise AppError(503, str(exc)) from None

    def stats(self, movie: object = None, autoid: str | None = None) -> dict:
        """anTraX's running counters (docs/workflow.md#validation-statistics) over the current marks of the session (one per tracklet, stale marks
        counted apart), per classifier, the review plan's estimates, and the assignment rate over the current pool
        (movie + autoID filter)."""
        summary = marks_summary(self.validation.rows(), self.judge)
        current, vs = summary["current"], summary["stats"]

        def n_frames(r: dict) -> int:
            try:
                return int(r.get("n_frames") or 0)
            except ValueError:
                return 0

        pool = self.pool(movie, autoid)["tracklets"]
        assigned = [r for r in pool if self.allowed_marks(r["autoID"])]
        plan = read_plan(self.classdir)
        now = sorted({c for m in self.movies if (c := self.classifier(m))})
        return {
            "checked": {"tracklets": len(current), "frames": sum(n_frames(r) for r in current.values())},
            "stale": len(summary["stale"]), "stale_marks": summary["n_stale_marks"],
            "counts": vs.counts,
            "wrong_id": rate_json(vs.wrong_id),
            "false_positive": rate_json(vs.false_positive),
            "false_negative": rate_json(vs.false_negative),
            "pool": {"tracklets": len(pool), "frames": sum(r["n"] for r in pool),
                     "assigned_tracklets": len(assigned), "assigned_frames": sum(r["n"] for r in assigned)},
            "classifiers": [{**c, "current": c["classifier"] in now} for c in summary["classifiers"]],
            "current_classifiers": now,
            "annotators": summary["annotators"], "annotator": self.annotator,
            "plan": plan_json(plan, current) if plan is not None else None,
            "can_undo": bool(self._undo),
            "file": str(self.validation.path),
        }
