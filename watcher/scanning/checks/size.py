"""`size-anomaly`: a release far bigger than the one before it, in bytes or in files — the usual
sign of a build that swept up a directory it should not have (source maps, fixtures, a whole repo)."""

from __future__ import annotations

from watcher.model import Category, Finding, Manifest, Severity
from watcher.scanning.checks.base import ComparisonCheck, ScanOptions


class SizeAnomalyCheck(ComparisonCheck):
    category = Category.SIZE_ANOMALY

    def compare(self, target: Manifest, baseline: Manifest, options: ScanOptions) -> list[Finding]:
        findings = []
        now_bytes, before_bytes = target.total_bytes, baseline.total_bytes
        grown_bytes = now_bytes - before_bytes
        if (
            grown_bytes > options.size_growth_floor_bytes
            and now_bytes > options.size_growth_factor * max(before_bytes, 1)
        ):
            factor = now_bytes / max(before_bytes, 1)
            findings.append(
                Finding(
                    rule="unpacked-size-growth",
                    category=self.category,
                    severity=Severity.HIGH if factor >= 10 else Severity.MEDIUM,
                    path="",
                    message=f"unpacked size grew {factor:,.1f}x: {before_bytes:,} → {now_bytes:,} bytes",
                    evidence={"before_bytes": before_bytes, "after_bytes": now_bytes},
                )
            )
        now_files, before_files = len(target.files), len(baseline.files)
        if (
            now_files - before_files > options.file_count_growth_floor
            and now_files > options.file_count_growth_factor * max(before_files, 1)
        ):
            added = sorted(set(target.files) - set(baseline.files))
            findings.append(
                Finding(
                    rule="file-count-growth",
                    category=self.category,
                    severity=Severity.MEDIUM,
                    path="",
                    message=f"file count grew {now_files / max(before_files, 1):,.1f}x: "
                    f"{before_files:,} → {now_files:,} files",
                    evidence={
                        "before_files": before_files,
                        "after_files": now_files,
                        "examples": added[:10],
                    },
                )
            )
        return findings
