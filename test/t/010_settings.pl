# The checks on the values of the webhook.* settings. They are sighup
# settings, so only ALTER SYSTEM (or the configuration file) reaches their
# check hooks: run here, on a node of the test's own, not by pg_regress on
# whatever server it is pointed at.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('settings');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'webhook'\n");
$node->start;

# ALTER SYSTEM checks a value before writing it: [setting, value, error or undef]
my @cases = (
	# retry_schedule: a comma-separated list of durations in PostgreSQL's units
	[ 'retry_schedule', 'bogus', qr/"bogus" is not a duration\.\nHINT:  Write durations such as 500ms, 5s, 5min, 2h or 1d/ ],
	[ 'retry_schedule', '5s,5x', qr/DETAIL:  "5x" is not a duration\./ ],
	[ 'retry_schedule', '-5s', qr/DETAIL:  "-5s" is not a duration\./ ],
	[ 'retry_schedule', '5 seconds', qr/DETAIL:  "5 seconds" is not a duration\./ ],
	[ 'retry_schedule', '100000d', qr/DETAIL:  "100000d" is not a duration\./ ],
	[ 'retry_schedule', '5m', qr/DETAIL:  "5m" is not a duration\./ ],
	[ 'retry_schedule', join(',', ('1s') x 65), qr/DETAIL:  The schedule has more than 64 delays\./ ],
	[ 'retry_schedule', ' 500ms, 1.5s ,2min, 1h,1d ', undef ],
	[ 'retry_schedule', '', undef ],
	# blocked_networks: a comma-separated list of CIDR blocks
	[ 'blocked_networks', '10.0.0.0/33', qr/invalid value for parameter "webhook.blocked_networks": "10.0.0.0\/33"\nDETAIL:  "10.0.0.0\/33" is not a network in CIDR form\.\nHINT:  Write networks such as 10.0.0.0\/8 or fd00::\/8/ ],
	[ 'blocked_networks', 'fd00::/129', qr/DETAIL:  "fd00::\/129" is not a network in CIDR form\./ ],
	[ 'blocked_networks', '10.0.0.0/8, localhost', qr/DETAIL:  " localhost" is not a network in CIDR form\./ ],
	[ 'blocked_networks', '10.0.0.0/', qr/DETAIL:  "10.0.0.0\/" is not a network in CIDR form\./ ],
	[ 'blocked_networks', '300.1.2.3', qr/DETAIL:  "300.1.2.3" is not a network in CIDR form\./ ],
	[ 'blocked_networks', '10.0.0.0/8, 192.168.0.0/16, 127.0.0.1, ::1, fd00::/8', undef ],
	# numbers and units are checked against their bounds
	[ 'timeout', '0', qr/0 ms is outside the valid range for parameter "webhook.timeout" \(1 \.\. 3600000\)/ ],
	[ 'timeout', '2h', qr/7200000 ms is outside the valid range/ ],
	[ 'max_concurrency', '0', qr/0 is outside the valid range for parameter "webhook.max_concurrency" \(1 \.\. 4096\)/ ],
	[ 'endpoint_concurrency', '5000', qr/5000 is outside the valid range/ ],
	[ 'workers_per_database', '0', qr/0 is outside the valid range for parameter "webhook.workers_per_database" \(1 \.\. 8\)/ ],
	[ 'workers_per_database', '9', qr/9 is outside the valid range/ ],
	[ 'workers_per_database', '8', undef ],
	[ 'batch_size', 'many', qr/invalid value for parameter "webhook.batch_size": "many"/ ],
	[ 'max_response_size', '1GB', qr/1073741824 B is outside the valid range/ ],
	[ 'max_response_size', '0', undef ],
	[ 'retention', '-1', qr/-1 s is outside the valid range/ ],
	[ 'disable_after', '1 fortnight', qr/HINT:  Valid units for this parameter are "us", "ms", "s", "min", "h", and "d"\./ ],
);
for my $case (@cases)
{
	my ($name, $value, $error) = @$case;
	(my $literal = $value) =~ s/'/''/g;
	my ($ret, $out, $err) = $node->psql('postgres', "ALTER SYSTEM SET webhook.$name = '$literal'");
	if (defined $error)
	{
		isnt($ret, 0, "webhook.$name = '$value' is refused");
		like($err, $error, '... saying why');
		like($err, qr/ERROR:  .*webhook\.$name/, '... naming the setting');
	}
	else
	{
		is($ret, 0, "webhook.$name = '$value' is accepted") or diag($err);
	}
	$node->safe_psql('postgres', "ALTER SYSTEM RESET webhook.$name");
}

# A value that passed the check is what the worker gets at reload.
$node->safe_psql('postgres', "ALTER SYSTEM SET webhook.retry_schedule = '500ms,5min'");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('webhook.retry_schedule') = '500ms,5min'")
  or die 'the reload was not seen';
pass('a checked value is applied at reload');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET webhook.retry_schedule');

# The prefix is reserved: no other webhook.* name can be set.
my ($ret, $out, $err) = $node->psql('postgres', 'ALTER SYSTEM SET webhook.nonexistent = 1');
like($err, qr/unrecognized configuration parameter "webhook.nonexistent"/, 'no unknown webhook.* setting');

is($node->safe_psql('postgres', "SELECT count(*) FROM pg_file_settings WHERE name LIKE 'webhook.%'"),
	'0', 'nothing is left in postgresql.auto.conf');

$node->stop;
done_testing();
