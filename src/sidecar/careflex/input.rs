//! The incidents a user hands `kim-cm careflex report`: a CSV file (a header
//! line with the SOAP element names as column names, `,` or `;` between
//! fields) or a JSON array of objects (flat, or nested like the SOAP body:
//! `employee{address, job, contact}`). Every row is checked before anything is
//! sent, and every problem is named with its line in the file, so that one
//! run shows all of them and a report is never sent half-valid.
//!
//! The rules, from the seed and the reference (docs/careflex.md): dates are
//! `YYYY-MM-DD` and real; `type` is an open list (`NEW` and `RST` are known,
//! others are left to the service); a row with any master data, and every
//! `NEW`, is a `newIncident` and needs the whole required master data; `sex`
//! is one of the configured values; `country` is an ISO 3166-1 alpha-2 code.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use time::Date;

/// The largest input file read.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;
/// The most incidents one input may hold.
pub const MAX_ROWS: usize = 100_000;
/// The longest value of any field, in characters.
pub const MAX_FIELD_CHARS: usize = 255;
/// The longest incident type code.
pub const MAX_TYPE_CHARS: usize = 32;
/// Problems listed at most; the rest are counted.
pub const MAX_PROBLEMS_SHOWN: usize = 200;

/// Every field an incident row may have: the SOAP element names.
pub const FIELDS: [&str; 25] = [
    "careflexId",
    "externalId",
    "employeeId",
    "validFrom",
    "createdAt",
    "type",
    "title",
    "firstName",
    "lastName",
    "birthday",
    "sex",
    "street",
    "houseNumber",
    "addressSuffix",
    "zipCode",
    "city",
    "country",
    "employmentSite",
    "employmentStatus",
    "startOfEmployment",
    "personnelNumber",
    "management",
    "emailBusiness",
    "mobileBusiness",
    "landlineBusiness",
];

/// The master data fields (`employee` and below); any of them makes a row a
/// `newIncident`.
const MASTER: [&str; 19] = [
    "title",
    "firstName",
    "lastName",
    "birthday",
    "sex",
    "street",
    "houseNumber",
    "addressSuffix",
    "zipCode",
    "city",
    "country",
    "employmentSite",
    "employmentStatus",
    "startOfEmployment",
    "personnelNumber",
    "management",
    "emailBusiness",
    "mobileBusiness",
    "landlineBusiness",
];

/// The master data a `newIncident` must have (the seed's example has them
/// all; `title`, `addressSuffix` and the contact fields are optional there).
const MASTER_REQUIRED: [&str; 14] = [
    "firstName",
    "lastName",
    "birthday",
    "sex",
    "street",
    "houseNumber",
    "zipCode",
    "city",
    "country",
    "employmentSite",
    "employmentStatus",
    "startOfEmployment",
    "personnelNumber",
    "management",
];

/// JSON objects that only group fields (the SOAP body's nesting).
const GROUPS: [&str; 4] = ["employee", "address", "job", "contact"];

/// ISO 3166-1 alpha-2, the officially assigned codes (249), and `XK`
/// (Kosovo), which the EU and German authorities use.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ \
BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ \
CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ \
DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR \
GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU \
ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ \
LA LB LC LI LK LR LS LT LU LV LY \
MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ \
NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA \
RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ \
TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

/// Whether `code` is a country code CareFlex can take.
pub fn country_ok(code: &str) -> bool {
    code.len() == 2 && COUNTRIES.split(' ').any(|c| c == code)
}

/// The kind of an incident (`type`): an open list, since the vendor's full
/// list of HR incidents is not public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentType {
    /// `NEW`: a new employee, with master data.
    New,
    /// `RST`: seen in the seed as a plain incident.
    Rst,
    Other(String),
}

impl IncidentType {
    pub fn parse(code: &str) -> IncidentType {
        match code {
            "NEW" => IncidentType::New,
            "RST" => IncidentType::Rst,
            other => IncidentType::Other(other.to_string()),
        }
    }

    pub fn code(&self) -> &str {
        match self {
            IncidentType::New => "NEW",
            IncidentType::Rst => "RST",
            IncidentType::Other(s) => s,
        }
    }
}

/// `address` of the master data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub street: String,
    pub house_number: String,
    pub address_suffix: Option<String>,
    pub zip_code: String,
    pub city: String,
    pub country: String,
}

/// `job` of the master data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub employment_site: String,
    pub employment_status: String,
    pub start_of_employment: Date,
    pub personnel_number: String,
    pub management: bool,
}

/// `contact` of the master data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    pub email_business: Option<String>,
    pub mobile_business: Option<String>,
    pub landline_business: Option<String>,
}

/// `employee`: the master data of a `newIncident`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Employee {
    pub title: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub birthday: Date,
    pub sex: String,
    pub address: Address,
    pub job: Job,
    pub contact: Contact,
}

/// One checked incident and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    /// The line of the input it starts on (1-based).
    pub line: usize,
    /// The row's own `careflexId`, if it has one.
    pub careflex_id: Option<String>,
    pub external_id: Option<String>,
    pub employee_id: String,
    pub valid_from: Date,
    pub created_at: Date,
    pub kind: IncidentType,
    /// Some: a `newIncident`; none: a `plainIncident`.
    pub employee: Option<Employee>,
}

/// A problem with the input, at a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why an input cannot be sent: the file itself, or its rows.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {file}: {why}")]
    Unreadable { file: String, why: String },
    #[error("{file}: {}", list(.problems))]
    Invalid {
        file: String,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    let mut s = format!(
        "{} problem{} found, nothing was sent:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems.iter().take(MAX_PROBLEMS_SHOWN) {
        s.push_str(&format!("\n  line {}: {}", p.line, p.message));
    }
    if problems.len() > MAX_PROBLEMS_SHOWN {
        s.push_str(&format!(
            "\n  and {} more",
            problems.len() - MAX_PROBLEMS_SHOWN
        ));
    }
    s
}

/// What the checks need to know beyond the row.
pub struct Rules<'a> {
    /// The accepted `sex` values (lower case).
    pub sex_values: &'a [String],
    /// `createdAt` of rows without one: the day of the report.
    pub today: Date,
}

/// One raw row: field → value, with its line.
#[derive(Debug, Clone, Default)]
pub struct RawRow {
    pub line: usize,
    pub fields: BTreeMap<String, String>,
}

/// Reads and checks `path` (CSV or JSON, told apart by the first character).
pub fn read(path: &Path, rules: &Rules<'_>) -> Result<Vec<Incident>, InputError> {
    let file = path.display().to_string();
    let unreadable = |why: String| InputError::Unreadable {
        file: file.clone(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if meta.len() > MAX_INPUT_BYTES {
        return Err(unreadable(format!(
            "it is larger than {} MiB; split it into several reports",
            MAX_INPUT_BYTES / 1024 / 1024
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| unreadable("it is not UTF-8 text; save it as UTF-8".into()))?;
    parse(&text, rules).map_err(|problems| InputError::Invalid { file, problems })
}

/// Parses and checks `text`: the incidents, or every problem found.
pub fn parse(text: &str, rules: &Rules<'_>) -> Result<Vec<Incident>, Vec<Problem>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rows = match text.trim_start().chars().next() {
        Some('[') | Some('{') => json_rows(text)?,
        Some(_) => csv_rows(text)?,
        None => Vec::new(),
    };
    if rows.is_empty() {
        return Err(vec![Problem {
            line: 1,
            message: "there are no incidents in the file (for a month without any, use `kim-cm careflex none`)".into(),
        }]);
    }
    if rows.len() > MAX_ROWS {
        return Err(vec![Problem {
            line: rows[MAX_ROWS].line,
            message: format!("more than {MAX_ROWS} incidents; split the file"),
        }]);
    }
    let mut out = Vec::with_capacity(rows.len());
    let mut problems = Vec::new();
    for row in rows {
        match check(&row, rules) {
            Ok(i) => out.push(i),
            Err(p) => problems.extend(p.into_iter().map(|message| Problem {
                line: row.line,
                message,
            })),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// The canonical field name of a column or JSON key (case-insensitive).
fn canonical(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .copied()
        .find(|f| f.eq_ignore_ascii_case(name.trim()))
}

/// Records of an RFC 4180 CSV text, each with the line it starts on.
fn csv_records(text: &str, sep: char) -> Result<Vec<(usize, Vec<String>)>, Problem> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let (mut line, mut start) = (1, 1);
    let (mut quoted, mut was_quoted, mut any) = (false, false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() && !was_quoted => {
                field.clear();
                quoted = true;
                was_quoted = true;
                any = true;
            }
            '"' => {
                return Err(Problem {
                    line,
                    message: "a quote inside an unquoted field; put the whole field in quotes and double the quote".into(),
                })
            }
            c if c == sep => {
                fields.push(std::mem::take(&mut field));
                was_quoted = false;
                any = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                if any || !field.trim().is_empty() {
                    fields.push(std::mem::take(&mut field));
                    records.push((start, std::mem::take(&mut fields)));
                }
                field.clear();
                line += 1;
                start = line;
                (was_quoted, any) = (false, false);
            }
            c => {
                if was_quoted {
                    if !c.is_whitespace() {
                        return Err(Problem {
                            line,
                            message: "text after the closing quote of a field".into(),
                        });
                    }
                } else {
                    field.push(c);
                    any = true;
                }
            }
        }
    }
    if quoted {
        return Err(Problem {
            line: start,
            message: "a quoted field is not closed".into(),
        });
    }
    if any || !field.trim().is_empty() {
        fields.push(field);
        records.push((start, fields));
    }
    Ok(records)
}

fn csv_rows(text: &str) -> Result<Vec<RawRow>, Vec<Problem>> {
    let header_line = text.lines().next().unwrap_or("");
    let sep = if header_line.matches(';').count() > header_line.matches(',').count() {
        ';'
    } else {
        ','
    };
    let records = csv_records(text, sep).map_err(|p| vec![p])?;
    let mut records = records.into_iter();
    let Some((hline, header)) = records.next() else {
        return Ok(Vec::new());
    };
    let mut columns = Vec::new();
    let mut problems = Vec::new();
    for name in &header {
        match canonical(name) {
            Some(f) if columns.contains(&Some(f)) => problems.push(Problem {
                line: hline,
                message: format!("the column {f} appears twice"),
            }),
            Some(f) => columns.push(Some(f)),
            None if name.trim().is_empty() => columns.push(None),
            None => problems.push(Problem {
                line: hline,
                message: format!(
                    "unknown column '{}'; the columns are named as the CareFlex elements: {}",
                    name.trim(),
                    FIELDS.join(", ")
                ),
            }),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut rows = Vec::new();
    for (line, values) in records {
        if values.iter().all(|v| v.trim().is_empty()) {
            continue;
        }
        if values.len() > columns.len() {
            problems.push(Problem {
                line,
                message: format!(
                    "{} fields, but the header has {} columns",
                    values.len(),
                    columns.len()
                ),
            });
            continue;
        }
        let mut fields = BTreeMap::new();
        for (col, v) in columns.iter().zip(values) {
            if let Some(name) = col {
                if !v.trim().is_empty() {
                    fields.insert(name.to_string(), v.trim().to_string());
                }
            }
        }
        rows.push(RawRow { line, fields });
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

/// The line each top-level element of a JSON array starts on.
fn element_lines(text: &str) -> Vec<usize> {
    let (mut line, mut depth) = (1, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    let mut lines = Vec::new();
    let mut expect_value = false;
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if depth == 1 && expect_value && !c.is_whitespace() && c != ']' {
            lines.push(line);
            expect_value = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 && c == '[' {
                    expect_value = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expect_value = true,
            _ => {}
        }
    }
    lines
}

/// Where a serde_json error is, as a problem.
fn json_problem(e: &serde_json::Error) -> Problem {
    Problem {
        line: e.line().max(1),
        message: format!("not valid JSON: {e}"),
    }
}

fn json_rows(text: &str) -> Result<Vec<RawRow>, Vec<Problem>> {
    let value: Value = serde_json::from_str(text).map_err(|e| vec![json_problem(&e)])?;
    let Value::Array(items) = value else {
        return Err(vec![Problem {
            line: 1,
            message: "the JSON must be an array of incidents: [{\"employeeId\": ..}, ..]".into(),
        }]);
    };
    let lines = element_lines(text);
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(1);
        let Value::Object(_) = item else {
            problems.push(Problem {
                line,
                message: "an incident must be a JSON object".into(),
            });
            continue;
        };
        let mut fields = BTreeMap::new();
        flatten(item, "", &mut fields, &mut |message| {
            problems.push(Problem { line, message })
        });
        rows.push(RawRow { line, fields });
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems)
    }
}

/// The leaf fields of a JSON incident, groups (`employee`, `address`, ..)
/// opened.
fn flatten(
    v: &Value,
    at: &str,
    out: &mut BTreeMap<String, String>,
    problem: &mut dyn FnMut(String),
) {
    let Value::Object(map) = v else { return };
    for (k, x) in map {
        let here = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        if GROUPS.contains(&k.as_str()) {
            match x {
                Value::Object(_) => flatten(x, &here, out, problem),
                Value::Null => {}
                _ => problem(format!("{here} must be an object")),
            }
            continue;
        }
        let Some(name) = canonical(k) else {
            problem(format!(
                "unknown field '{here}'; the fields are named as the CareFlex elements: {}",
                FIELDS.join(", ")
            ));
            continue;
        };
        let text = match x {
            Value::Null => continue,
            Value::String(s) => s.trim().to_string(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                problem(format!("{here} must be a text, a number or true/false"));
                continue;
            }
        };
        if text.is_empty() {
            continue;
        }
        if out.insert(name.to_string(), text).is_some() {
            problem(format!("{name} is given twice"));
        }
    }
}

/// `YYYY-MM-DD` as a date.
pub fn date(text: &str) -> Option<Date> {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || !digits(0..4) || !digits(5..7) {
        return None;
    }
    if !digits(8..10) {
        return None;
    }
    let year: i32 = text[0..4].parse().ok()?;
    let month: u8 = text[5..7].parse().ok()?;
    let day: u8 = text[8..10].parse().ok()?;
    let month = time::Month::try_from(month).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// The earliest year accepted in any date.
const FIRST_YEAR: i32 = 1900;
/// The latest year accepted in any date.
const LAST_YEAR: i32 = 2100;

/// Checks one row; the incident, or what is wrong with it.
fn check(row: &RawRow, rules: &Rules<'_>) -> Result<Incident, Vec<String>> {
    let mut problems = Vec::new();
    let get = |k: &str| row.fields.get(k).map(String::as_str);
    for (k, v) in &row.fields {
        if v.chars().count() > MAX_FIELD_CHARS {
            problems.push(format!("{k} is longer than {MAX_FIELD_CHARS} characters"));
        }
    }
    let mut required = |k: &str, why: &str| -> String {
        match get(k) {
            Some(v) => v.to_string(),
            None => {
                problems.push(format!("{k} is missing ({why})"));
                String::new()
            }
        }
    };
    let employee_id = required("employeeId", "required for every incident");
    let valid_from_text = required("validFrom", "required for every incident");
    let type_text = required("type", "required for every incident, e.g. NEW or RST");
    let mut day = |k: &str, text: &str, problems: &mut Vec<String>| -> Option<Date> {
        if text.is_empty() {
            return None;
        }
        match date(text) {
            Some(d) if (FIRST_YEAR..=LAST_YEAR).contains(&d.year()) => Some(d),
            Some(_) => {
                problems.push(format!(
                    "{k} '{text}' is not between {FIRST_YEAR} and {LAST_YEAR}"
                ));
                None
            }
            None => {
                problems.push(format!(
                    "{k} '{text}' is not a date of the form YYYY-MM-DD (e.g. 2020-04-24)"
                ));
                None
            }
        }
    };
    let valid_from = day("validFrom", &valid_from_text, &mut problems);
    let created_at = match get("createdAt") {
        Some(t) => day("createdAt", t, &mut problems),
        None => Some(rules.today),
    };
    if let Some(id) = get("careflexId") {
        if !super::config::careflex_id_ok(id) {
            problems.push(format!(
                "careflexId '{id}' is not a CareFlex ID (letters and digits, e.g. 09ce3580d84bf090)"
            ));
        }
    }
    if !type_text.is_empty()
        && (type_text.chars().count() > MAX_TYPE_CHARS
            || !type_text.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        problems.push(format!(
            "type '{type_text}' is not an incident code (letters and digits, e.g. NEW or RST)"
        ));
    }
    let kind = IncidentType::parse(&type_text);
    let has_master = MASTER.iter().any(|k| get(k).is_some());
    let employee = if has_master || kind == IncidentType::New {
        let missing: Vec<&str> = MASTER_REQUIRED
            .iter()
            .copied()
            .filter(|k| get(k).is_none())
            .collect();
        if !missing.is_empty() {
            let why = if kind == IncidentType::New {
                "type NEW needs the employee's master data"
            } else {
                "a row with master data needs all of it"
            };
            problems.push(format!("{why}: {} missing", missing.join(", ")));
        }
        employee(row, rules, &mut day, &mut problems)
    } else {
        None
    };
    match (valid_from, created_at, problems.is_empty()) {
        (Some(valid_from), Some(created_at), true) => Ok(Incident {
            line: row.line,
            careflex_id: get("careflexId").map(str::to_string),
            external_id: get("externalId").map(str::to_string),
            employee_id,
            valid_from,
            created_at,
            kind,
            employee,
        }),
        _ => Err(problems),
    }
}

type DayFn<'a> = dyn FnMut(&str, &str, &mut Vec<String>) -> Option<Date> + 'a;

/// The master data of a row (problems with the values are added; missing
/// fields were named by the caller).
fn employee(
    row: &RawRow,
    rules: &Rules<'_>,
    day: &mut DayFn<'_>,
    problems: &mut Vec<String>,
) -> Option<Employee> {
    let get = |k: &str| row.fields.get(k).cloned();
    let text = |k: &str| get(k).unwrap_or_default();
    let birthday = get("birthday").and_then(|t| day("birthday", &t, problems));
    if birthday.is_some_and(|b| b > rules.today) {
        problems.push("birthday is in the future".into());
    }
    let start = get("startOfEmployment").and_then(|t| day("startOfEmployment", &t, problems));
    let sex = get("sex").map(|s| s.to_lowercase());
    if let Some(s) = &sex {
        if !rules.sex_values.iter().any(|v| v.eq_ignore_ascii_case(s)) {
            problems.push(format!(
                "sex '{s}' is not one of {} (see [careflex] sex_values)",
                rules.sex_values.join(", ")
            ));
        }
    }
    let country = get("country").map(|c| c.to_ascii_uppercase());
    if let Some(c) = &country {
        if !country_ok(c) {
            problems.push(format!(
                "country '{c}' is not an ISO 3166-1 alpha-2 code (e.g. DE, AT, PL)"
            ));
        }
    }
    let zip = text("zipCode");
    if country.as_deref() == Some("DE")
        && !zip.is_empty()
        && !(zip.len() == 5 && zip.bytes().all(|b| b.is_ascii_digit()))
    {
        problems.push(format!(
            "zipCode '{zip}' is not a German postcode (5 digits)"
        ));
    }
    let management = match get("management").map(|m| m.to_lowercase()) {
        None => None,
        Some(m) => match m.as_str() {
            "true" | "1" | "yes" | "ja" | "y" | "j" => Some(true),
            "false" | "0" | "no" | "nein" | "n" => Some(false),
            _ => {
                problems.push(format!("management '{m}' is not true or false"));
                None
            }
        },
    };
    if let Some(mail) = get("emailBusiness") {
        let ok = mail.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.contains('@') && !d.starts_with('.')
        }) && !mail.chars().any(char::is_whitespace);
        if !ok {
            problems.push(format!("emailBusiness '{mail}' is not a mail address"));
        }
    }
    for k in ["mobileBusiness", "landlineBusiness"] {
        if let Some(p) = get(k) {
            if !p
                .chars()
                .all(|c| c.is_ascii_digit() || " +-/()".contains(c))
            {
                problems.push(format!("{k} '{p}' is not a telephone number"));
            }
        }
    }
    Some(Employee {
        title: get("title"),
        first_name: text("firstName"),
        last_name: text("lastName"),
        birthday: birthday?,
        sex: sex?,
        address: Address {
            street: text("street"),
            house_number: text("houseNumber"),
            address_suffix: get("addressSuffix"),
            zip_code: zip,
            city: text("city"),
            country: country?,
        },
        job: Job {
            employment_site: text("employmentSite"),
            employment_status: text("employmentStatus"),
            start_of_employment: start?,
            personnel_number: text("personnelNumber"),
            management: management?,
        },
        contact: Contact {
            email_business: get("emailBusiness"),
            mobile_business: get("mobileBusiness"),
            landline_business: get("landlineBusiness"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> (Vec<String>, Date) {
        (
            vec!["m".into(), "w".into(), "d".into(), "x".into()],
            time::macros::date!(2026 - 12 - 02),
        )
    }

    fn run(text: &str) -> Result<Vec<Incident>, Vec<Problem>> {
        let (sex, today) = rules();
        parse(
            text,
            &Rules {
                sex_values: &sex,
                today,
            },
        )
    }

    #[test]
    fn csv_with_semicolons_quotes_and_master_data() {
        let text = "employeeId;validFrom;createdAt;type;firstName;lastName;birthday;sex;street;houseNumber;zipCode;city;country;employmentSite;employmentStatus;startOfEmployment;personnelNumber;management;addressSuffix\n\
            4711;2020-04-24;2020-04-24;RST;;;;;;;;;;;;;;;\n\
            \n\
            4811;2020-04-24;;NEW;Thomas;Mustermann;1979-01-15;M;\"Muster;straße\";9;01234;Musterstadt;de;Branch 1;T;2020-04-24;123654789;ja;\"c/o \"\"Max\"\"\nHauptmieter\"\n\
            4911;2020-04-24;2020-04-24;RST;;;;;;;;;;;;;;;\n";
        let got = run(text).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].line, got[1].line, got[2].line), (2, 4, 6));
        assert!(got[0].employee.is_none());
        let e = got[1].employee.as_ref().unwrap();
        assert_eq!(e.address.street, "Muster;straße");
        assert_eq!(
            e.address.address_suffix.as_deref(),
            Some("c/o \"Max\"\nHauptmieter")
        );
        assert_eq!((e.sex.as_str(), e.address.country.as_str()), ("m", "DE"));
        assert!(e.job.management);
        assert_eq!(got[1].created_at, time::macros::date!(2026 - 12 - 02));
    }

    #[test]
    fn json_nested_or_flat_with_the_line_of_each_incident() {
        let text = r#"[
  {"employeeId": 4711, "validFrom": "2020-04-24", "type": "RST",
   "externalId": "CustomerId-4711-2345"},
  {
    "employeeId": "4811", "validFrom": "2020-04-24", "type": "NEW",
    "employee": {"firstName": "Thomas", "lastName": "M", "birthday": "1979-01-15", "sex": "m",
      "address": {"street": "S", "houseNumber": "9", "zipCode": "01234", "city": "C", "country": "DE"},
      "job": {"employmentSite": "B", "employmentStatus": "T", "startOfEmployment": "2020-04-24",
              "personnelNumber": "1", "management": true},
      "contact": {"emailBusiness": "t@example.de"}}
  },
  {"employeeId": "x", "validFrom": "2020-02-30", "type": "RST"}
]"#;
        let p = run(text).unwrap_err();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].line, 12);
        assert!(p[0].message.contains("validFrom '2020-02-30'"), "{p:?}");
        let ok = run(&text.replace("2020-02-30", "2020-02-29")).unwrap();
        assert_eq!((ok[0].line, ok[1].line, ok[2].line), (2, 4, 12));
        assert_eq!(ok[0].employee_id, "4711");
        assert_eq!(
            ok[1]
                .employee
                .as_ref()
                .unwrap()
                .contact
                .email_business
                .as_deref(),
            Some("t@example.de")
        );
    }

    #[test]
    fn every_problem_is_named_with_its_line() {
        let text = "employeeId,validFrom,type,sex,country,firstName\n\
            1,2020-13-01,RST,,,\n\
            ,2020-01-01,RST,,,\n\
            3,2020-01-01,NEW,,,\n\
            4,2020-01-01,RST,q,XX,Anna\n\
            5,2020-01-01,R S T,,,\n";
        let p = run(text).unwrap_err();
        let s: Vec<String> = p.iter().map(|p| p.to_string()).collect();
        let has = |line: usize, what: &str| {
            assert!(
                p.iter().any(|x| x.line == line && x.message.contains(what)),
                "line {line} {what}: {s:#?}"
            )
        };
        has(2, "validFrom '2020-13-01'");
        has(3, "employeeId is missing");
        has(4, "type NEW needs the employee's master data");
        has(5, "sex 'q'");
        has(5, "country 'XX'");
        has(5, "a row with master data needs all of it");
        has(6, "type 'R S T'");
        assert!(
            run("employeeId,validFrom,type,colour\n1,2020-01-01,RST,red\n").unwrap_err()[0]
                .message
                .contains("unknown column 'colour'")
        );
        assert!(run("").is_err());
        assert_eq!(COUNTRIES.split(' ').count(), 250);
    }
}
