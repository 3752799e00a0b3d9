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

define('CLI_SCRIPT', true);
require((getenv('BUFSYNC_TEST_MOODLE_DIR') ?: '/srv/moodle-real/moodle') . '/config.php');
require_once($CFG->libdir . '/completionlib.php');
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/user/lib.php');
require_once($CFG->dirroot . '/completion/criteria/completion_criteria_self.php');

use core_reportbuilder\local\filters\select;
use core_reportbuilder\local\filters\text;
use core_reportbuilder\local\helpers\report as report_helper;
use core_reportbuilder\manager;

const FUNCTIONS = ['core_reportbuilder_retrieve_report', 'core_completion_get_course_completion_status',
                   'gradereport_user_get_grade_items'];
const COMPLETED_AT = 1757116800;

[, $mode, $prefix] = $argv + [null, null, null];
if (!in_array($mode, ['setup', 'teardown'], true) || !preg_match('/^[a-z][a-z0-9]{2,30}$/', (string)$prefix)) {
    fwrite(STDERR, "usage: php completion_real.php setup <prefix> <courses> <students> <completed %> | teardown <prefix>\n");
    exit(2);
}
\core\session\manager::set_user(get_admin());

if ($mode === 'teardown') {
    foreach ($DB->get_records('reportbuilder_report', ['name' => "$prefix completion"]) as $report) {
        report_helper::delete_report($report->id);
    }
    if ($service = $DB->get_record('external_services', ['shortname' => $prefix])) {
        $DB->delete_records('external_tokens', ['externalserviceid' => $service->id]);
        $DB->delete_records('external_services_functions', ['externalserviceid' => $service->id]);
        $DB->delete_records('external_services', ['id' => $service->id]);
    }
    foreach ($DB->get_records_select('course', $DB->sql_like('shortname', ':p'), ['p' => "$prefix-%"]) as $course) {
        delete_course($course, false);
    }
    foreach ($DB->get_records_select('user', $DB->sql_like('username', ':p') . ' AND deleted = 0',
                                     ['p' => "$prefix%"]) as $user) {
        delete_user($user);
    }
    echo json_encode(['deleted' => $prefix]), "\n";
    exit(0);
}

[$ncourses, $nstudents, $percent] = array_map('intval', array_slice($argv, 3, 3));
$students = [];
for ($i = 0; $i < $nstudents; $i++) {
    $students[] = user_create_user((object)[
        'username' => sprintf('%ss%04d', $prefix, $i), 'password' => 'Lab#Pass2026', 'firstname' => 'Студент',
        'lastname' => sprintf('Номер%04d', $i), 'email' => sprintf('%ss%04d@example.com', $prefix, $i),
        'auth' => 'manual', 'confirmed' => 1, 'mnethostid' => $CFG->mnet_localhost_id], true, false);
}
$manual = enrol_get_plugin('manual');
$courses = [];
for ($c = 0; $c < $ncourses; $c++) {
    $course = create_course((object)['fullname' => "$prefix C$c", 'shortname' => "$prefix-C$c",
                                     'idnumber' => "$prefix-C$c", 'category' => 1, 'enablecompletion' => 1]);
    $courses[] = (int)$course->id;
    $instance = $DB->get_record('enrol', ['courseid' => $course->id, 'enrol' => 'manual'], '*', MUST_EXIST);
    $criterion = new completion_criteria_self();
    $form = (object)['id' => $course->id, 'criteria_self' => 1];
    $criterion->update_config($form);
    $aggregation = new completion_aggregation(['course' => $course->id, 'criteriatype' => null]);
    $aggregation->setMethod(COMPLETION_AGGREGATION_ALL);
    $aggregation->save();
    foreach ($students as $i => $userid) {
        $manual->enrol_user($instance, $userid, 5);
        if ($i * 100 < $percent * $nstudents) {
            (new completion_criteria_completion(['course' => $course->id, 'userid' => $userid,
                                                 'criteriaid' => $criterion->id]))->mark_complete(COMPLETED_AT);
            (new completion_completion(['course' => $course->id, 'userid' => $userid]))->mark_complete(COMPLETED_AT);
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
