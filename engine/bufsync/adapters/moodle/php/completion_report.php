<?php
// bufsync: makes the report builder custom report bufsync reads course completion from (moodle.grades.completion:
// report). Moodle 4.5 answers course completion per student only; this report answers it for every student of
// every course, 10,000 rows a call. A custom report cannot be made through web services, so the site runs this once.
//
//   sudo -u www-data php completion_report.php --moodle=/var/www/moodle [--user=<the bufsync web service login>]
//                                              [--name=<the report's name>]
//
// It prints the report's id: put it in bufsync's config as moodle.grades.completion_report. Running it again finds
// the report it made before (by name) and prints that id. The report ("bufsync: course completion", source "Course
// participants") has three columns, sorted: course idnumber, user idnumber, time completed; it lists completed
// students only. --user gives that account the right to read it (audience "Manually added users"); a site admin
// token needs none. --name gives the report another name (default "bufsync: course completion"; tests make theirs under
// a prefix of their own on a shared site). Made by hand instead, it must have exactly these columns in this order.

define('CLI_SCRIPT', true);

$options = getopt('', ['moodle:', 'user::', 'name::', 'help']);
if (isset($options['help']) || empty($options['moodle'])) {
    fwrite(STDERR, "usage: php completion_report.php --moodle=<Moodle's directory> [--user=<login>] [--name=<name>]\n");
    exit(2);
}
require(rtrim($options['moodle'], '/') . '/config.php');
require_once($CFG->libdir . '/clilib.php');

use core_reportbuilder\local\filters\date;
use core_reportbuilder\local\helpers\report as report_helper;
use core_reportbuilder\local\models\report as report_model;
use core_reportbuilder\manager;
use core_reportbuilder\reportbuilder\audience\manual;

const REPORT_NAME = 'bufsync: course completion';
$reportname = is_string($options['name'] ?? null) && $options['name'] !== '' ? $options['name'] : REPORT_NAME;

\core\session\manager::set_user(get_admin());

$reader = null;
if (!empty($options['user'])) {
    $reader = $DB->get_record('user', ['username' => $options['user'], 'deleted' => 0]);
    if (!$reader) {
        cli_error("no user with login '{$options['user']}'", 2);
    }
}

$existing = $DB->get_record('reportbuilder_report', ['name' => $reportname, 'type' => 0], 'id', IGNORE_MULTIPLE);
if ($existing) {
    $reportid = (int)$existing->id;
} else {
    $persistent = report_helper::create_report((object)[
        'name' => $reportname, 'source' => \core_course\reportbuilder\datasource\participants::class,
        'uniquerows' => 1], false);  // a student enrolled twice (manual, cohort) is one row
    $reportid = (int)$persistent->get('id');
    foreach (['course:idnumber', 'user:idnumber', 'completion:timecompleted'] as $column) {
        $added = report_helper::add_report_column($reportid, $column);
        if ($column !== 'completion:timecompleted') {
            // pages are stable only in a defined order: course, then person
            report_helper::toggle_report_column_sorting($reportid, $added->get('id'), true);
        }
    }
    report_helper::add_report_condition($reportid, 'completion:timecompleted');
    manager::get_report_from_persistent($persistent)->set_condition_values([
        'completion:timecompleted_operator' => date::DATE_NOT_EMPTY]);
}
if ($reader) {
    $has = false;
    foreach ($DB->get_records('reportbuilder_audience', ['reportid' => $reportid, 'classname' => manual::class]) as $a) {
        $has = $has || in_array((int)$reader->id, array_map('intval', json_decode($a->configdata, true)['users'] ?? []), true);
    }
    if (!$has) {
        manual::create($reportid, ['users' => [(int)$reader->id]]);
    }
}
echo $reportid, "\n";
