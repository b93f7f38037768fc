use super::*;
use chrono::TimeZone;

fn spec(cron: &str, tz: &str) -> ScheduleSpec {
    ScheduleSpec {
        name: "s".into(),
        description: None,
        flow: "f".into(),
        version: None,
        cron: cron.into(),
        timezone: tz.into(),
        input: Value::Null,
        misfire: Misfire::Skip,
        paused: false,
    }
}

fn compiled(cron: &str, tz: &str) -> CompiledSchedule {
    spec(cron, tz).compile().unwrap()
}

fn local(tz: &str, y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Millis {
    let tz: Tz = tz.parse().unwrap();
    tz.with_ymd_and_hms(y, mo, d, h, mi, s)
        .earliest()
        .unwrap()
        .timestamp_millis()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Millis {
    local("UTC", y, mo, d, h, mi, s)
}

fn issues(s: ScheduleSpec) -> Vec<Issue> {
    s.compile().unwrap_err().issues
}

#[test]
fn an_out_of_range_field_is_named_with_its_range() {
    let i = issues(spec("0 61 * * * *", "UTC"));
    assert_eq!(i[0].path, "cron");
    assert_eq!(
        i[0].message,
        "cron \"0 61 * * * *\": minute field \"61\" is out of range 0-59; allowed: 0-59, with * , - /"
    );
    let i = issues(spec("0 0 * 13 *", "UTC"));
    assert!(
        i[0].message.contains("month field \"13\""),
        "{}",
        i[0].message
    );
    let i = issues(spec("*/0 * * * * *", "UTC"));
    assert!(
        i[0].message.contains("second field \"*/0\""),
        "{}",
        i[0].message
    );
    let i = issues(spec("0 0 * * 9", "UTC"));
    assert!(
        i[0].message.contains("day-of-week field \"9\""),
        "{}",
        i[0].message
    );
}

#[test]
fn a_wrong_field_count_says_what_is_expected() {
    for bad in ["* * *", "1 2 3 4 5 6 7", ""] {
        let i = issues(spec(bad, "UTC"));
        assert_eq!(i[0].path, "cron");
        assert!(i[0].message.contains("expected 6"), "{}", i[0].message);
    }
}

#[test]
fn an_expression_that_never_fires_is_rejected() {
    let i = issues(spec("0 0 0 30 2 *", "UTC"));
    assert!(i[0].message.contains("never fires"), "{}", i[0].message);
}

#[test]
fn an_unknown_zone_suggests_the_closest() {
    let i = issues(spec("* * * * * *", "Europe/Pariss"));
    assert_eq!(i[0].path, "timezone");
    assert_eq!(
        i[0].message,
        "timezone \"Europe/Pariss\": unknown IANA time zone (did you mean Europe/Paris?)"
    );
    let i = issues(spec("* * * * * *", "Nowhere"));
    assert!(i[0].message.contains("unknown IANA time zone"));
}

#[test]
fn limits_and_names_are_checked_together() {
    let mut s = spec("0 99 * * * *", "Mars/Base");
    s.misfire = Misfire::CatchUp(0);
    s.version = Some(0);
    s.name = "bad name".into();
    let paths: Vec<String> = issues(s).into_iter().map(|i| i.path).collect();
    assert_eq!(
        paths,
        ["name", "version", "misfire.catch_up", "cron", "timezone"]
    );
    let mut s = spec("* * * * * *", "UTC");
    s.misfire = Misfire::CatchUp(MAX_CATCH_UP + 1);
    assert_eq!(issues(s)[0].path, "misfire.catch_up");
}

#[test]
fn documents_parse_from_yaml_and_reject_unknown_fields() {
    let s = parse_schedule(
        "name: nightly\nflow: report\ncron: '0 30 2 * * *'\ntimezone: Europe/Berlin\nmisfire: {catch_up: 3}\ninput: {day: '{{ schedule.fire_time }}'}\n",
    )
    .unwrap();
    assert_eq!(s.misfire, Misfire::CatchUp(3));
    assert_eq!(s.timezone, "Europe/Berlin");
    s.compile().unwrap();
    let s = parse_schedule(r#"{"name":"n","flow":"f","cron":"@hourly"}"#).unwrap();
    assert_eq!((s.timezone.as_str(), s.misfire), ("UTC", Misfire::Skip));
    let err = parse_schedule("name: n\nflow: f\ncron: '* * * * *'\ntimzone: UTC\n").unwrap_err();
    assert!(err.issues[0].message.contains("unknown field `timzone`"));
    let err = parse_schedule("name: n\nflow: f\ncron: x\nmisfire: later\n").unwrap_err();
    assert_eq!(err.issues[0].path, "misfire");
}

#[test]
fn five_fields_fire_at_second_zero_and_six_fields_at_their_second() {
    let five = compiled("*/15 * * * *", "UTC");
    let six = compiled("30 */15 * * * *", "UTC");
    let t0 = utc(2026, 1, 1, 0, 0, 0);
    assert_eq!(
        five.next_n(t0, 3),
        [
            utc(2026, 1, 1, 0, 15, 0),
            utc(2026, 1, 1, 0, 30, 0),
            utc(2026, 1, 1, 0, 45, 0)
        ]
    );
    assert_eq!(
        six.next_n(t0, 2),
        [utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 15, 30)]
    );
    assert_eq!(
        compiled("* * * * * *", "UTC").next_after(t0),
        Some(t0 + 1000)
    );
}

#[test]
fn spring_forward_fires_a_gap_time_once_at_the_end_of_the_gap() {
    // Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
    let s = compiled("0 30 2 * * *", "Europe/Berlin");
    let next = s.next_n(local("Europe/Berlin", 2026, 3, 28, 12, 0, 0), 3);
    assert_eq!(
        next,
        [
            utc(2026, 3, 29, 1, 0, 0),  // 03:00 CEST, right after the gap
            utc(2026, 3, 30, 0, 30, 0), // 02:30 CEST
            utc(2026, 3, 31, 0, 30, 0),
        ]
    );
}

#[test]
fn fall_back_fires_a_fixed_time_once() {
    // Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let s = compiled("0 30 2 * * *", "Europe/Berlin");
    let next = s.next_n(local("Europe/Berlin", 2026, 10, 24, 12, 0, 0), 3);
    assert_eq!(
        next,
        [
            utc(2026, 10, 25, 0, 30, 0), // 02:30 CEST, the first pass only
            utc(2026, 10, 26, 1, 30, 0), // 02:30 CET
            utc(2026, 10, 27, 1, 30, 0),
        ]
    );
    // An hourly wildcard job follows the wall clock: both passes of the repeated hour.
    let hourly = compiled("0 30 * * * *", "America/New_York");
    let next = hourly.next_n(local("America/New_York", 2026, 11, 1, 0, 0, 0), 3);
    assert_eq!(
        next,
        [
            utc(2026, 11, 1, 4, 30, 0),
            utc(2026, 11, 1, 5, 30, 0),
            utc(2026, 11, 1, 6, 30, 0)
        ]
    );
}

#[test]
fn skip_fires_only_the_latest_tick_within_the_grace() {
    let s = compiled("* * * * * *", "UTC");
    let due = utc(2026, 1, 1, 0, 0, 0);
    // On time, or a little late: the due tick fires.
    let p = s.plan(due, due + 40);
    assert_eq!(p.ticks, [due]);
    assert_eq!(p.next, Some(due + 1000));
    // Ten seconds late: only the latest tick fires.
    let p = s.plan(due, due + 10_500);
    assert_eq!(p.ticks, [due + 10_000]);
    assert_eq!(p.next, Some(due + 11_000));
    // A daily job two hours after its tick: missed, nothing fires, the next day waits.
    let daily = compiled("0 0 0 * * *", "UTC");
    let p = daily.plan(due, due + 7_200_000);
    assert!(p.ticks.is_empty());
    assert_eq!(p.next, Some(utc(2026, 1, 2, 0, 0, 0)));
}

#[test]
fn catch_up_fires_at_most_n_of_the_missed_ticks_oldest_first() {
    let mut sp = spec("0 0 * * * *", "UTC");
    sp.misfire = Misfire::CatchUp(3);
    let s = sp.compile().unwrap();
    let due = utc(2026, 1, 1, 0, 0, 0);
    let p = s.plan(due, utc(2026, 1, 1, 10, 30, 0));
    assert_eq!(
        p.ticks,
        [
            utc(2026, 1, 1, 8, 0, 0),
            utc(2026, 1, 1, 9, 0, 0),
            utc(2026, 1, 1, 10, 0, 0)
        ]
    );
    assert_eq!(p.next, Some(utc(2026, 1, 1, 11, 0, 0)));
    // Fewer missed ticks than N: all of them.
    let p = s.plan(due, utc(2026, 1, 1, 1, 0, 0));
    assert_eq!(p.ticks, [due, utc(2026, 1, 1, 1, 0, 0)]);
    // Nothing due yet.
    assert!(s.plan(due, due - 1).ticks.is_empty());
}

#[test]
fn input_templates_see_the_fire_time() {
    let ctx = fire_context("nightly", utc(2026, 1, 2, 3, 4, 5), false);
    let v = crate::template::render_value(
        &serde_json::json!({"at": "{{ schedule.fire_time }}", "ms": "{{ schedule.fire_time_ms }}"}),
        &ctx,
    )
    .unwrap();
    assert_eq!(v["at"], "2026-01-02T03:04:05.000Z");
    assert_eq!(v["ms"], utc(2026, 1, 2, 3, 4, 5));
    let mut s = spec("* * * * * *", "UTC");
    s.input = serde_json::json!({"x": "{{ schedule.nope }}"});
    assert_eq!(issues(s)[0].path, "input");
}
