# Health: webhook.endpoint_status and webhook.worker_status against known
# deliveries (delivered, retried, failed), what pg_stat_activity shows of the
# worker, and the queries file for prometheus-postgres-exporter, scraped for real.
use strict;
use warnings;
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('status', conf => "webhook.disable_after = 0\n");
my $recv = start_receiver(paths => {
	'/ok' => { status => 200 },
	'/bad' => { status => 500, body => 'down' },
	'/flaky' => { statuses => [ 500 ] },
});

my %ep;
for my $p (qw(ok bad flaky))
{
	$ep{$p} = create_endpoint($node, $recv->url("/$p"), name => "'$p'", events => "'{t_$p}'");
}

sub sq { return $node->safe_psql('postgres', shift); }

# The worker in pg_stat_activity: its type, and between rounds idle in an
# extension wait (latch, postmaster death and curl's sockets together).
my $pid = sq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
like($pid, qr/^\d+$/, 'the worker is in pg_stat_activity');
ok($node->poll_query_until('postgres',
	"SELECT state || '|' || wait_event_type || '|' || wait_event || '|' || application_name
	   FROM pg_stat_activity WHERE pid = $pid", 'idle|Extension|Extension|webhook worker'),
	'idle between rounds, waiting in an extension wait event');

# Its slot in shared memory.
is(sq("SELECT database || '|' || pid || '|' || (started_at <= now()) || '|' || in_flight
      FROM webhook.worker_status"), "postgres|$pid|true|0", 'worker_status: one worker, this one');

# Known deliveries: 5 delivered at once, 1 delivered after a retry, 2 failed
# after 1 + 3 attempts (retry_schedule 1s,1s,1s).
sq("SELECT webhook.emit('t_ok', jsonb_build_object('n', i)) FROM generate_series(1, 5) i");
sq("SELECT webhook.emit('t_flaky', '{}')");
sq("SELECT webhook.emit('t_bad', jsonb_build_object('n', i)) FROM generate_series(1, 2) i");
ok(wait_idle($node), 'every delivery has its outcome');

my $status = sub {
	my ($p) = @_;
	return sq("SELECT concat_ws('|', name, state, pending, failed, delivered_1h, failed_1h,
	            last_delivered_at IS NOT NULL, coalesce(last_error, '-'), last_error_at IS NOT NULL,
	            p50_ms_1h IS NOT NULL AND p99_ms_1h >= p50_ms_1h)
	          FROM webhook.endpoint_status WHERE id = $ep{$p}");
};
is($status->('ok'), 'ok|verified|0|0|5|0|t|-|f|t', 'endpoint_status: 5 delivered');
is($status->('flaky'), 'flaky|verified|0|0|1|0|t|-|f|t',
	'a delivery retried then delivered counts as delivered (its last attempt had no error)');
is($status->('bad'), 'bad|verified|0|2|0|2|f|HTTP 500|t|t', 'two failed, with the last error');
ok(sq("SELECT last_error_at BETWEEN now() - interval '1 minute' AND now()
        FROM webhook.endpoint_status WHERE id = $ep{bad}") eq 't', 'last_error_at is the last attempt');
is(sq("SELECT last_delivered_at = (SELECT max(delivered_at) FROM webhook.delivery WHERE endpoint_id = $ep{ok})
        FROM webhook.endpoint_status WHERE id = $ep{ok}"), 't', 'last_delivered_at is the newest delivery');
is(sq("SELECT count(*) FROM webhook.endpoint_status"), '3', 'one row per endpoint');

# The durations: p50 / p99 over the attempts of the last hour, in ms.
my ($p50, $max) = split /\|/, sq("SELECT p50_ms_1h, (SELECT 1000 * extract(epoch FROM max(duration))
	FROM webhook.delivery WHERE endpoint_id = $ep{ok}) FROM webhook.endpoint_status WHERE id = $ep{ok}");
ok($p50 > 0 && $p50 <= $max, "p50 in milliseconds ($p50 ms, longest $max ms)");

# A backlog: a retry due in an hour is pending; attempts older than an hour
# leave the last hour's figures but stay in the totals.
sq("INSERT INTO webhook.delivery (endpoint_id, event_id, event, next_attempt_at)
   VALUES ($ep{ok}, 0, '{}', now() + interval '1 hour')");
sq("UPDATE webhook.delivery SET attempted_at = attempted_at - interval '2 hours'
    WHERE endpoint_id = $ep{bad} AND id = (SELECT min(id) FROM webhook.delivery WHERE endpoint_id = $ep{bad})");
like($status->('ok'), qr/^ok\|verified\|1\|0\|5\|/, 'a pending delivery is the backlog');
like($status->('bad'), qr/^bad\|verified\|0\|2\|0\|1\|/, 'failed_1h counts the last hour only');

# The worker's counters: 6 delivered, 2 failed, 3 + 3 + 1 retries. They are
# published right after the round's commit: poll.
my $counters = sub { sq("SELECT deliveries || '|' || failures || '|' || retries FROM webhook.worker_status") };
ok(wait_until(sub { $counters->() eq '6|2|7' }), 'worker_status counts deliveries, failures, retries')
  or diag('counters: ' . $counters->());
ok(sq("SELECT last_round_at > started_at FROM webhook.worker_status") eq 't', 'last_round_at after the start');

# A monitoring role: SELECT on the two views (and EXECUTE on the function
# behind worker_status), as README's grants block says; nothing else.
sq("CREATE ROLE webhook_monitor LOGIN;
   GRANT SELECT ON webhook.endpoint_status, webhook.worker_status TO webhook_monitor;
   GRANT EXECUTE ON FUNCTION webhook._worker_status(), webhook._served() TO webhook_monitor;");
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM webhook.endpoint_status',
	extra_params => [ '-U', 'webhook_monitor' ]);
is($out, '3', 'the monitoring role reads endpoint_status');
($ret, $out, $err) = $node->psql('postgres', 'SELECT count(*) FROM webhook.worker_status',
	extra_params => [ '-U', 'webhook_monitor' ]);
is($out, '1', 'and worker_status');
($ret, $out, $err) = $node->psql('postgres', 'SELECT token FROM webhook.endpoint',
	extra_params => [ '-U', 'webhook_monitor' ]);
like($err, qr/permission denied for table endpoint/, 'but not the endpoints themselves');

# prometheus-postgres-exporter with the shipped queries file, scraped on loopback.
my $exporter = '/usr/bin/prometheus-postgres-exporter';
ok(-x $exporter, 'prometheus-postgres-exporter is installed (test/setup.sh)')
  or BAIL_OUT('prometheus-postgres-exporter missing: apt-get install prometheus-postgres-exporter');
my $queries = dirname(__FILE__) . '/../../contrib/prometheus/webhook-queries.yaml';
ok(-f $queries, 'the queries file is shipped');
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $host = $node->host;
my $exporter_log = $node->basedir . '/exporter.log';
my $h = IPC::Run::start(
	[ $exporter, "--web.listen-address=127.0.0.1:$port", "--extend.query-path=$queries",
	  '--disable-default-metrics', '--disable-settings-metrics' ],
	'<', \undef, '>', $exporter_log, '2>', $exporter_log,
	init => sub {
		# lib/pq panics on some libpq variables (PGSYSCONFDIR, which
		# pg_virtualenv sets): the data source says all it needs
		delete $ENV{$_} for grep { /^PG/ } keys %ENV;
		$ENV{DATA_SOURCE_NAME} = "host=$host port=" . $node->port
		  . ' user=webhook_monitor dbname=postgres sslmode=disable';
	});
my $metrics = '';
my $http = HTTP::Tiny->new(timeout => 10);
ok(wait_until(sub {
	my $r = $http->get("http://127.0.0.1:$port/metrics");
	$metrics = $r->{success} ? $r->{content} : '';
	return $metrics =~ /^webhook_worker_deliveries\{/m && $metrics =~ /^webhook_endpoint_failed\{/m;
}), 'the exporter serves webhook metrics on /metrics')
  or diag(slurp_file($exporter_log));

my $metric = sub {
	my ($name, $label) = @_;
	my @v = map { /^\Q$name\E\{([^}]*)\} (\S+)$/ && index($1, $label) >= 0 ? $2 : () }
	  split /\n/, $metrics;
	return @v == 1 ? $v[0] : "(" . scalar(@v) . " series)";
};
like($metrics, qr/^# TYPE webhook_worker_deliveries counter$/m, 'deliveries is a counter');
is($metric->('webhook_worker_deliveries', qq{database="postgres"}), 6, 'worker deliveries counter');
is($metric->('webhook_worker_failures', qq{pid="$pid"}), 2, 'worker failures counter');
is($metric->('webhook_worker_retries', qq{database="postgres"}), 7, 'worker retries counter');
is($metric->('webhook_endpoint_failed', qq{endpoint="bad"}), 2, 'endpoint failed gauge');
is($metric->('webhook_endpoint_delivered_1h', qq{endpoint="ok"}), 5, 'endpoint delivered_1h gauge');
is($metric->('webhook_endpoint_pending', qq{endpoint="ok"}), 1, 'endpoint pending gauge');
is($metric->('webhook_endpoint_verified', qq{endpoint="bad"}), 1, 'endpoint verified gauge');
like($metric->('webhook_endpoint_last_error_at_seconds', qq{endpoint="bad"}), qr/^\d\.\d+e\+09$/,
	'last error time as unix seconds');
$h->kill_kill(grace => 2);

# In flight: a request the receiver holds open, waited for in the same
# extension wait event.
$recv->set_script(paths => { '/ok' => { delay => 30 } });
sq("SELECT webhook.emit('t_ok', '{}')");
ok($node->poll_query_until('postgres', 'SELECT in_flight FROM webhook.worker_status', '1'),
	'a request being answered is in flight');
ok($node->poll_query_until('postgres', "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $pid",
	'Extension'), 'waiting for it in an extension wait event');

# A worker that exits frees its slot; the one started after it has a new one.
sq("SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 AND bool_and(pid <> $pid AND deliveries = 0) FROM webhook.worker_status"),
	'a restarted worker: one row, new pid, counters from zero');

# Not for PUBLIC.
sq('CREATE ROLE nobody LOGIN');
($ret, $out, $err) = $node->psql('postgres', 'SELECT * FROM webhook.worker_status',
	extra_params => [ '-U', 'nobody' ]);
like($err, qr/permission denied for view worker_status/, 'PUBLIC cannot read worker_status');

$recv->stop;
$node->stop;
done_testing();
