<?php
// benchmarks/completion_real.py's helper on a real Moodle 4.5 (run with the site's PHP settings, in its directory):
//
//   php completion_real.php setup <prefix> <courses> <students> <completed %>
//       courses "<prefix>-C<n>" with self completion, the same students enrolled in each, that share of them
//       completed; a custom report on the course participants datasource (course idnumber, login, completed,
//       time completed, course grade; students of these courses only); a web service "<prefix>" of its own with
//       the functions measured and a token of the admin for it. Prints JSON: course ids, report id, token.
//   php completion_real.php teardown <prefix>
//       deletes all of it: report, service and its tokens, courses, users.
//
// The service is the benchmark's own so the site's (shared) one is never changed.

require(__DIR__ . '/../tests/integration/contract/fixtures/lab.php');

use core_reportbuilder\local\filters\select;
use core_reportbuilder\local\filters\text;
use core_reportbuilder\local\helpers\report as report_helper;
use core_reportbuilder\manager;

const FUNCTIONS = ['core_reportbuilder_retrieve_report', 'core_completion_get_course_completion_status',
                   'gradereport_user_get_grade_items'];
const COMPLETED_AT = 1757116800;

[$mode, $prefix] = lab_arguments($argv, ['setup', 'teardown'],
    'php completion_real.php setup <prefix> <courses> <students> <completed %> | teardown <prefix>');

if ($mode === 'teardown') {
    foreach ($DB->get_records('reportbuilder_report', ['name' => "$prefix completion"]) as $report) {
        report_helper::delete_report($report->id);
    }
    if ($service = $DB->get_record('external_services', ['shortname' => $prefix])) {
        $DB->delete_records('external_tokens', ['externalserviceid' => $service->id]);
        $DB->delete_records('external_services_functions', ['externalserviceid' => $service->id]);
        $DB->delete_records('external_services', ['id' => $service->id]);
    }
    lab_delete($prefix);
    echo json_encode(['deleted' => $prefix]), "\n";
    exit(0);
}

[$ncourses, $nstudents, $percent] = array_map('intval', array_slice($argv, 3, 3));
$students = [];
for ($i = 0; $i < $nstudents; $i++) {
    $students[] = lab_user(sprintf('%ss%04d', $prefix, $i), sprintf('Номер%04d', $i), 'Студент');
}
$manual = enrol_get_plugin('manual');
$courses = [];
for ($c = 0; $c < $ncourses; $c++) {
    $course = create_course((object)['fullname' => "$prefix C$c", 'shortname' => "$prefix-C$c",
                                     'idnumber' => "$prefix-C$c", 'category' => 1, 'enablecompletion' => 1]);
    $courses[] = (int)$course->id;
    $instance = $DB->get_record('enrol', ['courseid' => $course->id, 'enrol' => 'manual'], '*', MUST_EXIST);
    $criterion = lab_self_completion($course->id);
    foreach ($students as $i => $userid) {
        $manual->enrol_user($instance, $userid, 5);
        if ($i * 100 < $percent * $nstudents) {
            lab_complete($course->id, $criterion->id, $userid, COMPLETED_AT, COMPLETED_AT);
        }
    }
}

// The custom report: what the report builder's UI would save, made through its API.
$persistent = report_helper::create_report((object)[
    'name' => "$prefix completion", 'source' => \core_course\reportbuilder\datasource\participants::class], false);
$reportid = $persistent->get('id');
foreach (['course:idnumber', 'user:username', 'completion:completed', 'completion:timecompleted',
          'completion:grade'] as $column) {
    $added = report_helper::add_report_column($reportid, $column);
    if (in_array($column, ['course:idnumber', 'user:username'], true)) {
        // Pages are stable only in a defined order (course, then login: both unique together).
        report_helper::toggle_report_column_sorting($reportid, $added->get('id'), true);
    }
}
foreach (['course:idnumber', 'role:name'] as $condition) {
    report_helper::add_report_condition($reportid, $condition);
}
manager::get_report_from_persistent($persistent)->set_condition_values([
    'course:idnumber_operator' => text::STARTS_WITH, 'course:idnumber_value' => "$prefix-C",
    'role:name_operator' => select::EQUAL_TO, 'role:name_value' => 5]);

$service = (object)['name' => $prefix, 'shortname' => $prefix, 'enabled' => 1, 'restrictedusers' => 0,
                    'downloadfiles' => 0, 'uploadfiles' => 0, 'timecreated' => time()];
$service->id = $DB->insert_record('external_services', $service);
foreach (FUNCTIONS as $function) {
    $DB->insert_record('external_services_functions', ['externalserviceid' => $service->id, 'functionname' => $function]);
}
$token = \core_external\util::generate_token(EXTERNAL_TOKEN_PERMANENT, $service, 2, context_system::instance());
echo json_encode(['courses' => $courses, 'students' => array_map('intval', $students), 'report' => (int)$reportid,
                  'token' => $token]), "\n";
