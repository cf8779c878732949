//! The `batch` group: Job and CronJob, and the cron schedule syntax.

use crate::duration::parse_go_duration;
use std::time::Duration;

use super::meta::{
    immutable, nonnegative, object_meta_errors, object_meta_update_errors, selector_matches,
    validate_annotations, validate_label_selector, validate_labels,
};
use super::names::{is_dns1123_label, name_is_dns_subdomain};
use super::pods::validate_pod_template_spec;
use super::{BadValue, FieldError, Path};
use crate::k8s::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use crate::k8s::api::core::v1::PodTemplateSpec;

/// The most pods an indexed job may run at once.
const MAX_PARALLELISM_FOR_INDEXED_JOB: i32 = 100_000;
/// The job-name label the job controller puts on pods (and its legacy form).
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
/// The controller-uid label the job controller puts on pods (and its legacy form).
const CONTROLLER_UID_LABELS: [&str; 2] = ["batch.kubernetes.io/controller-uid", "controller-uid"];

/// A parsed cron schedule, in the syntax upstream's CronJob accepts (robfig/cron's
/// standard parser: five fields, or a descriptor such as `@hourly` or `@every 1h`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CronSchedule {
    /// Five fields, each a bit set: bit `n` set means value `n` matches.
    Fields {
        /// Minutes, 0–59.
        minutes: u64,
        /// Hours, 0–23.
        hours: u64,
        /// Days of the month, 1–31.
        days_of_month: u64,
        /// Months, 1–12.
        months: u64,
        /// Days of the week, 0–6 (Sunday is 0).
        days_of_week: u64,
        /// Whether the day-of-month field was `*` or `?` (then only the day of the
        /// week restricts days, and vice versa).
        day_of_month_star: bool,
        /// Whether the day-of-week field was `*` or `?`.
        day_of_week_star: bool,
    },
    /// `@every <duration>`.
    Every(Duration),
}

/// Validates a job on create: metadata, the spec, and the selector the API server
/// generated (see [`crate::defaults::generate_job_selector`]) unless
/// `spec.manualSelector` is true.
pub fn validate_job(job: &Job) -> Vec<FieldError> {
    let mut errs = object_meta_errors(
        &job.metadata,
        true,
        name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    let default = JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&default);
    errs.extend(generated_selector_errors(job, spec));
    errs.extend(job_spec_errors(spec, &Path::new("spec")));
    if spec.completion_mode.as_deref() == Some("Indexed")
        && let (Some(name), Some(completions)) = (job.metadata.name.as_deref(), spec.completions)
        && completions > 0
    {
        let hostname = format!("{name}-{}", completions - 1);
        if !is_dns1123_label(&hostname).is_empty() {
            errs.push(FieldError::invalid(
                &Path::new("metadata").child("name"),
                name,
                format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
    errs
}

/// Validates a job update: the selector, completion mode, failure policy and
/// (unless the job is suspended, for scheduling fields) the template are immutable;
/// completions change only for indexed jobs, together with parallelism.
pub fn validate_job_update(new: &Job, old: &Job) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    let default = JobSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&default);
    let old_spec = old.spec.as_ref().unwrap_or(&default);
    let path = Path::new("spec");
    errs.extend(job_spec_errors(spec, &path));

    if spec.completions != old_spec.completions {
        let indexed = spec.completion_mode.as_deref() == Some("Indexed");
        let p = path.child("completions");
        let shown = || {
            spec.completions
                .map_or_else(|| BadValue::raw("null"), BadValue::from)
        };
        if !indexed {
            errs.push(FieldError::invalid(
                &p,
                shown(),
                super::meta::FIELD_IMMUTABLE,
            ));
        } else if spec.completions != spec.parallelism
            || old_spec.completions != old_spec.parallelism
        {
            errs.push(FieldError::invalid(
                &p,
                shown(),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    }
    errs.extend(immutable(
        &spec.selector,
        &old_spec.selector,
        || BadValue::json(&spec.selector),
        &path.child("selector"),
    ));
    let mut template = spec.template.clone();
    if old_spec.suspend == Some(true) {
        // A suspended job's scheduling directives may change.
        copy_scheduling_directives(&mut template, &old_spec.template);
    }
    errs.extend(immutable(
        &template,
        &old_spec.template,
        || BadValue::json(&spec.template),
        &path.child("template"),
    ));
    errs.extend(immutable(
        &spec.completion_mode,
        &old_spec.completion_mode,
        || BadValue::from(spec.completion_mode.as_deref()),
        &path.child("completionMode"),
    ));
    errs.extend(immutable(
        &spec.pod_failure_policy,
        &old_spec.pod_failure_policy,
        || BadValue::json(&spec.pod_failure_policy),
        &path.child("podFailurePolicy"),
    ));
    errs.extend(immutable(
        &spec.backoff_limit_per_index,
        &old_spec.backoff_limit_per_index,
        || BadValue::json(&spec.backoff_limit_per_index),
        &path.child("backoffLimitPerIndex"),
    ));
    errs.extend(immutable(
        &spec.managed_by,
        &old_spec.managed_by,
        || BadValue::from(spec.managed_by.as_deref()),
        &path.child("managedBy"),
    ));
    errs
}

/// Validates a cron job: a name short enough for its jobs' names, a parseable
/// schedule, the concurrency policy, the job template and the history limits.
pub fn validate_cron_job(cron_job: &CronJob) -> Vec<FieldError> {
    let meta_path = Path::new("metadata");
    let mut errs = object_meta_errors(&cron_job.metadata, true, name_is_dns_subdomain, &meta_path);
    let default = CronJobSpec::default();
    errs.extend(cron_job_spec_errors(
        cron_job.spec.as_ref().unwrap_or(&default),
        None,
        &Path::new("spec"),
    ));
    // The controller appends an 11-character suffix to name the jobs it creates.
    let name = cron_job.metadata.name.as_deref().unwrap_or_default();
    if name.len() > 52 {
        errs.push(FieldError::invalid(
            &meta_path.child("name"),
            name,
            "must be no more than 52 characters",
        ));
    }
    errs
}

/// Validates a cron job update (a `TZ=` in the schedule stays allowed if the stored
/// schedule had one).
pub fn validate_cron_job_update(new: &CronJob, old: &CronJob) -> Vec<FieldError> {
    let mut errs = object_meta_update_errors(&new.metadata, &old.metadata);
    let default = CronJobSpec::default();
    errs.extend(cron_job_spec_errors(
        new.spec.as_ref().unwrap_or(&default),
        Some(old.spec.as_ref().unwrap_or(&default)),
        &Path::new("spec"),
    ));
    errs
}

/// Parses a cron schedule as upstream's CronJob does; the error is robfig/cron's
/// message (`expected exactly 5 fields, found 4: [* * * *]`).
pub fn parse_cron_schedule(schedule: &str) -> Result<CronSchedule, String> {
    if schedule.is_empty() {
        return Err("empty spec string".to_owned());
    }
    let mut spec = schedule;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let eq = spec.find('=').unwrap_or_default();
        let Some(space) = spec.find(' ') else {
            return Err(format!(
                "provided bad location {}: unknown time zone",
                &spec[eq + 1..]
            ));
        };
        let zone = &spec[eq + 1..space];
        if zone.is_empty() {
            return Err(format!("provided bad location {zone}: unknown time zone"));
        }
        spec = spec[space..].trim();
    }
    if spec.starts_with('@') {
        return parse_descriptor(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let (minutes, _) = cron_field(fields[0], 0, 59, &[], 0)?;
    let (hours, _) = cron_field(fields[1], 0, 23, &[], 0)?;
    let (days_of_month, day_of_month_star) = cron_field(fields[2], 1, 31, &[], 0)?;
    let (months, _) = cron_field(fields[3], 1, 12, &MONTHS, 1)?;
    let (days_of_week, day_of_week_star) = cron_field(fields[4], 0, 6, &DAYS, 0)?;
    Ok(CronSchedule::Fields {
        minutes,
        hours,
        days_of_month,
        months,
        days_of_week,
        day_of_month_star,
        day_of_week_star,
    })
}

fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max)
        .step_by(step as usize)
        .fold(0, |acc, n| acc | (1u64 << n))
}

fn parse_descriptor(spec: &str) -> Result<CronSchedule, String> {
    let fields = |minutes, hours, dom: Option<u32>, month: Option<u32>, dow: Option<u32>| {
        CronSchedule::Fields {
            minutes,
            hours,
            days_of_month: dom.map_or_else(|| bits(1, 31, 1), |d| 1 << d),
            months: month.map_or_else(|| bits(1, 12, 1), |m| 1 << m),
            days_of_week: dow.map_or_else(|| bits(0, 6, 1), |d| 1 << d),
            day_of_month_star: dom.is_none(),
            day_of_week_star: dow.is_none(),
        }
    };
    match spec {
        "@yearly" | "@annually" => Ok(fields(1, 1, Some(1), Some(1), None)),
        "@monthly" => Ok(fields(1, 1, Some(1), None, None)),
        "@weekly" => Ok(fields(1, 1, None, None, Some(0))),
        "@daily" | "@midnight" => Ok(fields(1, 1, None, None, None)),
        "@hourly" => Ok(fields(1, bits(0, 23, 1), None, None, None)),
        _ => match spec.strip_prefix("@every ") {
            Some(duration) => parse_go_duration(duration)
                .map(CronSchedule::Every)
                .map_err(|e| format!("failed to parse duration {spec}: {e}")),
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// One cron field: comma-separated ranges. Returns the bits and whether it was `*`.
fn cron_field(
    field: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(u64, bool), String> {
    let mut all = 0u64;
    let mut star = false;
    for expr in field.split(',').filter(|e| !e.is_empty()) {
        let range_and_step: Vec<&str> = expr.split('/').collect();
        let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
        let single = low_and_high.len() == 1;
        let (start, mut end, mut is_star) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
            (min, max, true)
        } else {
            let start = cron_int_or_name(low_and_high[0], names, name_base)?;
            let end = match low_and_high.len() {
                1 => start,
                2 => cron_int_or_name(low_and_high[1], names, name_base)?,
                _ => return Err(format!("too many hyphens: {expr}")),
            };
            (start, end, false)
        };
        let step = match range_and_step.len() {
            1 => 1,
            2 => {
                let step = cron_int(range_and_step[1])?;
                if single {
                    end = max;
                }
                if step > 1 {
                    is_star = false;
                }
                step
            }
            _ => return Err(format!("too many slashes: {expr}")),
        };
        if start < min {
            return Err(format!(
                "beginning of range ({start}) below minimum ({min}): {expr}"
            ));
        }
        if end > max {
            return Err(format!(
                "end of range ({end}) above maximum ({max}): {expr}"
            ));
        }
        if start > end {
            return Err(format!(
                "beginning of range ({start}) beyond end of range ({end}): {expr}"
            ));
        }
        if step == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
        all |= bits(start, end, step);
        star |= is_star;
    }
    Ok((all, star))
}

fn cron_int_or_name(expr: &str, names: &[&str], base: u32) -> Result<u32, String> {
    let lower = expr.to_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + base);
    }
    cron_int(expr)
}

/// Go's `strconv.Atoi`, then non-negative, with robfig's messages.
fn cron_int(expr: &str) -> Result<u32, String> {
    let digits = expr.strip_prefix(['+', '-']).unwrap_or(expr);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: invalid syntax",
            super::go_quote(expr)
        ));
    }
    let Ok(n) = expr.parse::<i64>() else {
        return Err(format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {}: value out of range",
            super::go_quote(expr)
        ));
    };
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Upstream's `validateGeneratedSelector`: when the API server generated the selector,
/// the template carries the job's uid and name and the selector selects the uid.
fn generated_selector_errors(job: &Job, spec: &JobSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if spec.manual_selector == Some(true) {
        return errs;
    }
    let Some(selector) = &spec.selector else {
        return errs;
    };
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    if uid.is_empty() {
        errs.push(FieldError::required(
            &Path::new("metadata").child("uid"),
            "",
        ));
    }
    let meta_path = Path::new("spec").child("template").child("metadata");
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    let has_label = |key: &str, expected: &str| -> Option<FieldError> {
        let p = meta_path.child("labels").key(key);
        match labels.and_then(|l| l.get(key)) {
            None => Some(FieldError::required(&p, expected)),
            Some(actual) if actual != expected => Some(FieldError::invalid(
                &p,
                BadValue::string_map(labels),
                format!("must be '{expected}'"),
            )),
            Some(_) => None,
        }
    };
    errs.extend(has_label(CONTROLLER_UID_LABELS[1], uid));
    errs.extend(has_label(JOB_NAME_LABELS[1], name));
    errs.extend(has_label(CONTROLLER_UID_LABELS[0], uid));
    errs.extend(has_label(JOB_NAME_LABELS[0], name));
    let expected =
        std::collections::BTreeMap::from([(CONTROLLER_UID_LABELS[0].to_owned(), uid.to_owned())]);
    if selector_matches(selector, Some(&expected)) == Some(false) {
        errs.push(FieldError::invalid(
            &Path::new("spec").child("selector"),
            BadValue::json(selector),
            "`selector` not auto-generated",
        ));
    }
    errs
}

/// A job spec outside a cron job: the common rules plus a selector matching the
/// template.
fn job_spec_errors(spec: &JobSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = common_job_spec_errors(spec, path);
    match &spec.selector {
        None => errs.push(FieldError::required(&path.child("selector"), "")),
        Some(selector) => {
            errs.extend(validate_label_selector(selector, &path.child("selector")));
            let labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.as_ref());
            if selector_matches(selector, labels) == Some(false) {
                errs.push(FieldError::invalid(
                    &path.child("template").child("metadata").child("labels"),
                    BadValue::string_map(labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    errs
}

/// The rules for a job spec, wherever it is (a job or a cron job's job template).
fn common_job_spec_errors(spec: &JobSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (value, field) in [
        (spec.parallelism.map(i64::from), "parallelism"),
        (spec.completions.map(i64::from), "completions"),
        (spec.active_deadline_seconds, "activeDeadlineSeconds"),
        (spec.backoff_limit.map(i64::from), "backoffLimit"),
        (
            spec.ttl_seconds_after_finished.map(i64::from),
            "ttlSecondsAfterFinished",
        ),
        (
            spec.backoff_limit_per_index.map(i64::from),
            "backoffLimitPerIndex",
        ),
        (spec.max_failed_indexes.map(i64::from), "maxFailedIndexes"),
    ] {
        if let Some(value) = value {
            errs.extend(nonnegative(value, &path.child(field)));
        }
    }
    let mode = spec.completion_mode.as_deref();
    if let Some(mode) = mode
        && !matches!(mode, "NonIndexed" | "Indexed")
    {
        errs.push(FieldError::not_supported(
            &path.child("completionMode"),
            mode,
            &["NonIndexed", "Indexed"],
        ));
    }
    if mode == Some("Indexed") {
        if spec.completions.is_none() {
            errs.push(FieldError::required(
                &path.child("completions"),
                "when completion mode is Indexed",
            ));
        }
        if let Some(p) = spec
            .parallelism
            .filter(|&p| p > MAX_PARALLELISM_FOR_INDEXED_JOB)
        {
            errs.push(FieldError::invalid(
                &path.child("parallelism"),
                p,
                format!(
                    "must be less than or equal to {MAX_PARALLELISM_FOR_INDEXED_JOB} when completion mode is Indexed"
                ),
            ));
        }
    }
    if let Some(limit) = spec.backoff_limit_per_index
        && mode != Some("Indexed")
    {
        errs.push(FieldError::invalid(
            &path.child("backoffLimitPerIndex"),
            limit,
            "requires indexed completion mode",
        ));
    }
    if spec.max_failed_indexes.is_some() && spec.backoff_limit_per_index.is_none() {
        errs.push(FieldError::required(
            &path.child("backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        ));
    }
    if let Some(policy) = &spec.pod_failure_policy {
        for (i, rule) in policy.rules.iter().enumerate() {
            if !matches!(
                rule.action.as_str(),
                "FailJob" | "FailIndex" | "Ignore" | "Count"
            ) {
                errs.push(FieldError::not_supported(
                    &path
                        .child("podFailurePolicy")
                        .child("rules")
                        .index(i)
                        .child("action"),
                    &rule.action,
                    &["Count", "FailIndex", "FailJob", "Ignore"],
                ));
            }
        }
    }
    if let Some(policy) = spec.pod_replacement_policy.as_deref() {
        let p = path.child("podReplacementPolicy");
        if spec.pod_failure_policy.is_some() {
            if policy != "Failed" {
                errs.push(FieldError::not_supported(&p, policy, &["Failed"]));
            }
        } else if !matches!(policy, "Failed" | "TerminatingOrFailed") {
            errs.push(FieldError::not_supported(
                &p,
                policy,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
    let template_path = path.child("template");
    errs.extend(validate_pod_template_spec(&spec.template, &template_path));
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or_default();
    let restart_path = template_path.child("spec").child("restartPolicy");
    match restart {
        // Unset is defaulted to Always, which a job cannot use.
        "" | "Always" => errs.push(FieldError::required(
            &restart_path,
            r#"valid values: "OnFailure", "Never""#,
        )),
        "OnFailure" | "Never" => {
            if spec.pod_failure_policy.is_some() && restart != "Never" {
                errs.push(FieldError::invalid(
                    &restart_path,
                    restart,
                    r#"only "Never" is supported when podFailurePolicy is specified"#,
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            &restart_path,
            other,
            &["OnFailure", "Never"],
        )),
    }
    errs
}

fn copy_scheduling_directives(template: &mut PodTemplateSpec, old: &PodTemplateSpec) {
    if let (Some(spec), Some(old_spec)) = (&mut template.spec, &old.spec) {
        spec.node_selector.clone_from(&old_spec.node_selector);
        spec.tolerations.clone_from(&old_spec.tolerations);
        spec.affinity.clone_from(&old_spec.affinity);
        spec.scheduling_gates.clone_from(&old_spec.scheduling_gates);
    }
    if let (Some(meta), Some(old_meta)) = (&mut template.metadata, &old.metadata) {
        meta.labels.clone_from(&old_meta.labels);
        meta.annotations.clone_from(&old_meta.annotations);
    }
}

fn cron_job_spec_errors(
    spec: &CronJobSpec,
    old: Option<&CronJobSpec>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let schedule_path = path.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(&schedule_path, ""));
    } else {
        if let Err(e) = parse_cron_schedule(&spec.schedule) {
            errs.push(FieldError::invalid(&schedule_path, &spec.schedule, e));
        }
        let allow_tz = old.is_some_and(|o| o.schedule.contains("TZ"));
        if spec.schedule.contains("TZ") {
            if !allow_tz {
                errs.push(FieldError::invalid(
                    &schedule_path,
                    &spec.schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                ));
            } else if spec.time_zone.is_some() {
                errs.push(FieldError::invalid(
                    &schedule_path,
                    &spec.schedule,
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                ));
            }
        }
    }
    if let Some(deadline) = spec.starting_deadline_seconds {
        errs.extend(nonnegative(
            deadline,
            &path.child("startingDeadlineSeconds"),
        ));
    }
    if old.is_none_or(|o| o.time_zone != spec.time_zone)
        && let Some(tz) = &spec.time_zone
    {
        let p = path.child("timeZone");
        if tz.is_empty() {
            errs.push(FieldError::invalid(
                &p,
                tz,
                "timeZone must be nil or non-empty string",
            ));
        } else if tz.eq_ignore_ascii_case("local") {
            errs.push(FieldError::invalid(
                    &p,
                    tz,
                    "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
                ));
        } else if !tz
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
            || tz.starts_with('/')
            || tz.split('/').any(|part| part == ".." || part.is_empty())
        {
            errs.push(FieldError::invalid(
                &p,
                tz,
                format!("unknown time zone {tz}"),
            ));
        }
    }
    if let Some(policy) = spec.concurrency_policy.as_deref().filter(|p| !p.is_empty())
        && !matches!(policy, "Allow" | "Forbid" | "Replace")
    {
        errs.push(FieldError::not_supported(
            &path.child("concurrencyPolicy"),
            policy,
            &["Allow", "Forbid", "Replace"],
        ));
    }
    errs.extend(job_template_errors(
        &spec.job_template,
        &path.child("jobTemplate"),
    ));
    for (value, field) in [
        (
            spec.successful_jobs_history_limit,
            "successfulJobsHistoryLimit",
        ),
        (spec.failed_jobs_history_limit, "failedJobsHistoryLimit"),
    ] {
        if let Some(value) = value {
            errs.extend(nonnegative(value.into(), &path.child(field)));
        }
    }
    errs
}

fn job_template_errors(template: &JobTemplateSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(meta) = &template.metadata {
        let mp = path.child("metadata");
        errs.extend(validate_labels(meta.labels.as_ref(), &mp.child("labels")));
        errs.extend(validate_annotations(
            meta.annotations.as_ref(),
            &mp.child("annotations"),
        ));
    }
    let default = JobSpec::default();
    let spec = template.spec.as_ref().unwrap_or(&default);
    let sp = path.child("spec");
    errs.extend(common_job_spec_errors(spec, &sp));
    if let Some(selector) = &spec.selector {
        errs.push(FieldError::invalid(
            &sp.child("selector"),
            BadValue::json(selector),
            "`selector` will be auto-generated",
        ));
    }
    if spec.manual_selector == Some(true) {
        errs.push(FieldError::not_supported(
            &sp.child("manualSelector"),
            true,
            &["nil", "false"],
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn job(spec: Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn generated_labels() -> Value {
        json!({
            "batch.kubernetes.io/controller-uid": "u-1",
            "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "u-1",
            "job-name": "pi",
        })
    }

    fn good_job_spec() -> Value {
        json!({
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}},
            "template": {
                "metadata": {"labels": generated_labels()},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]},
            },
        })
    }

    #[test]
    fn a_job_with_a_generated_selector_is_valid() {
        assert_eq!(
            messages(validate_job(&job(good_job_spec()))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn job_pods_may_not_restart_always() {
        let mut spec = good_job_spec();
        spec["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_eq!(
            messages(validate_job(&job(spec.clone()))),
            vec![
                r#"spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#
            ]
        );
        spec["template"]["spec"]["restartPolicy"] = json!("Sometimes");
        assert_eq!(
            messages(validate_job(&job(spec))),
            vec![
                r#"spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure""#,
                r#"spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Never", "OnFailure""#,
            ]
        );
    }

    #[test]
    fn job_counts_may_not_be_negative() {
        let mut spec = good_job_spec();
        spec["parallelism"] = json!(-1);
        spec["completions"] = json!(-2);
        spec["backoffLimit"] = json!(-3);
        spec["completionMode"] = json!("Sometimes");
        assert_eq!(
            messages(validate_job(&job(spec))),
            vec![
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.completions: Invalid value: -2: must be greater than or equal to 0",
                "spec.backoffLimit: Invalid value: -3: must be greater than or equal to 0",
                r#"spec.completionMode: Unsupported value: "Sometimes": supported values: "Indexed", "NonIndexed""#,
            ]
        );
    }

    #[test]
    fn indexed_jobs_need_completions() {
        let mut spec = good_job_spec();
        spec["completionMode"] = json!("Indexed");
        assert_eq!(
            messages(validate_job(&job(spec))),
            vec!["spec.completions: Required value: when completion mode is Indexed"]
        );
    }

    #[test]
    fn a_job_without_a_selector_is_rejected() {
        let mut spec = good_job_spec();
        spec.as_object_mut().unwrap().remove("selector");
        assert_eq!(
            messages(validate_job(&job(spec))),
            vec!["spec.selector: Required value"]
        );
    }

    #[test]
    fn a_generated_selector_needs_the_generated_labels() {
        let mut spec = good_job_spec();
        spec["template"]["metadata"]["labels"] =
            json!({"batch.kubernetes.io/controller-uid": "u-1"});
        assert_eq!(
            messages(validate_job(&job(spec))),
            vec![
                "spec.template.metadata.labels[controller-uid]: Required value: u-1",
                "spec.template.metadata.labels[job-name]: Required value: pi",
                "spec.template.metadata.labels[batch.kubernetes.io/job-name]: Required value: pi",
            ]
        );
        let mut spec = good_job_spec();
        spec["manualSelector"] = json!(true);
        spec["selector"] = json!({"matchLabels": {"app": "pi"}});
        spec["template"]["metadata"]["labels"] = json!({"app": "other"});
        assert_eq!(
            messages(validate_job(&job(spec))),
            vec![
                r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`"#
            ]
        );
    }

    #[test]
    fn job_templates_and_selectors_are_immutable() {
        let old = job(good_job_spec());
        let mut new = old.clone();
        new.spec.as_mut().unwrap().parallelism = Some(3);
        assert!(validate_job_update(&new, &old).is_empty());
        let mut new = old.clone();
        new.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("perl:2".into());
        let errs = messages(validate_job_update(&new, &old));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("spec.template: Invalid value: {"),
            "{errs:?}"
        );
        assert!(errs[0].ends_with(": field is immutable"));
        let mut new = old.clone();
        new.spec.as_mut().unwrap().completions = Some(5);
        assert_eq!(
            messages(validate_job_update(&new, &old)),
            vec!["spec.completions: Invalid value: 5: field is immutable"]
        );
    }

    fn cron_job(schedule: &str, extra: Value) -> CronJob {
        let mut spec = json!({
            "schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "c", "image": "busybox"}],
            }}}},
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                s.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(
            json!({"metadata": {"name": "tick", "namespace": "d"}, "spec": spec}),
        )
        .unwrap()
    }

    #[test]
    fn cron_jobs_need_a_parseable_schedule() {
        assert!(validate_cron_job(&cron_job("*/5 * * * *", json!({}))).is_empty());
        assert_eq!(
            messages(validate_cron_job(&cron_job("", json!({})))),
            vec!["spec.schedule: Required value"]
        );
        assert_eq!(
            messages(validate_cron_job(&cron_job("* * * *", json!({})))),
            vec![
                r#"spec.schedule: Invalid value: "* * * *": expected exactly 5 fields, found 4: [* * * *]"#
            ]
        );
        assert_eq!(
            messages(validate_cron_job(&cron_job("TZ=UTC 0 * * * *", json!({})))),
            vec![
                r#"spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"#
            ]
        );
    }

    #[test]
    fn cron_job_policies_and_templates_are_checked() {
        let cj = cron_job(
            "@hourly",
            json!({"concurrencyPolicy": "Sometimes", "successfulJobsHistoryLimit": -1, "timeZone": "Local"}),
        );
        assert_eq!(
            messages(validate_cron_job(&cj)),
            vec![
                r#"spec.timeZone: Invalid value: "Local": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"#,
                r#"spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace""#,
                "spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
        let mut cj = cron_job("@daily", json!({}));
        cj.metadata.name = Some("a".repeat(53));
        cj.spec
            .as_mut()
            .unwrap()
            .job_template
            .spec
            .as_mut()
            .unwrap()
            .manual_selector = Some(true);
        assert_eq!(
            messages(validate_cron_job(&cj)),
            vec![
                r#"spec.jobTemplate.spec.manualSelector: Unsupported value: true: supported values: "false", "nil""#.to_owned(),
                format!(r#"metadata.name: Invalid value: "{}": must be no more than 52 characters"#, "a".repeat(53)),
            ]
        );
    }

    #[test]
    fn cron_fields_follow_robfig_cron() {
        for ok in [
            "* * * * *",
            "0 0 1 1 *",
            "*/15 9-17 * * mon-fri",
            "0 0 ? * SUN",
            "5,10,15 * * JAN,jul *",
            "0 0 28 * *",
            "@every 1h30m",
            "@yearly",
        ] {
            assert!(parse_cron_schedule(ok).is_ok(), "{ok}");
        }
        let err = |s: &str| parse_cron_schedule(s).unwrap_err();
        assert_eq!(
            err("60 * * * *"),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            err("5-1 * * * *"),
            "beginning of range (5) beyond end of range (1): 5-1"
        );
        assert_eq!(
            err("x * * * *"),
            r#"failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax"#
        );
        assert_eq!(
            err("*/0 * * * *"),
            "step of range should be a positive number: */0"
        );
        assert_eq!(err("1-2-3 * * * *"), "too many hyphens: 1-2-3");
        assert_eq!(err("@sometimes"), "unrecognized descriptor: @sometimes");
        assert_eq!(
            err("@every 5x"),
            r#"failed to parse duration @every 5x: time: unknown unit "x" in duration "5x""#
        );
        assert_eq!(
            err("* * * * * *"),
            "expected exactly 5 fields, found 6: [* * * * * *]"
        );
    }

    #[test]
    fn parsed_schedules_expose_their_fields() {
        let Ok(CronSchedule::Fields {
            minutes,
            hours,
            days_of_week,
            day_of_month_star,
            day_of_week_star,
            ..
        }) = parse_cron_schedule("*/20 3 * * 1-5")
        else {
            panic!("not fields");
        };
        assert_eq!(minutes, (1 << 0) | (1 << 20) | (1 << 40));
        assert_eq!(hours, 1 << 3);
        assert_eq!(days_of_week, 0b111110);
        assert!(day_of_month_star);
        assert!(!day_of_week_star);
        assert_eq!(
            parse_cron_schedule("@every 90s"),
            Ok(CronSchedule::Every(Duration::from_secs(90)))
        );
    }
}
