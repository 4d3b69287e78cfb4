# The worker's loop: a blackholed endpoint does not hold up a healthy one,
# SIGTERM is answered at once with transfers stalled, SIGHUP reloads
# settings, and a terminated worker comes back.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use WebhookTest;

my $node = webhook_node('worker', conf => "webhook.timeout = '30s'\nmax_prepared_transactions = 2\n");
my $recv = start_receiver(paths => { '/hole' => { blackhole => JSON::PP::true } });
my $healthy = create_endpoint($node, $recv->url('/healthy'), events => "'{tick}'");

# Time for $n events to reach the healthy endpoint.
sub time_burst
{
	my ($n) = @_;
	my $before = scalar($recv->deliveries('/healthy'));
	my $t0 = time();
	$node->safe_psql('postgres',
		"SELECT webhook.emit('tick', jsonb_build_object('i', g)) FROM generate_series(1, $n) g");
	wait_until(sub { scalar($recv->deliveries('/healthy')) >= $before + $n }, 60) or return 999;
	return time() - $t0;
}

my $alone = time_burst(500);
diag(sprintf('500 events to the healthy endpoint alone: %.2fs', $alone));

# A blackholed endpoint (accepts, never answers) subscribed to the same events.
my $hole = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/hole') . "', events => '{tick}', verify => false)");
my $beside = time_burst(500);
diag(sprintf('500 events with a blackholed endpoint beside it: %.2fs', $beside));
ok(scalar($recv->requests('/hole')) > 0, 'the blackholed endpoint is being sent to');
cmp_ok($beside, '<', 3 * $alone + 2, 'the healthy endpoint is not held up (within 3x its time alone + 2s)');
cmp_ok($beside, '<', 30, 'and well within the request timeout');
is(scalar($recv->requests('/hole')), 16, 'the blackholed endpoint holds only its endpoint_concurrency slots');

# SIGTERM with transfers stalled: the worker exits within a second.
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
my $t0 = time();
kill 'TERM', $pid;
ok(wait_until(sub { !kill(0, $pid) }, 10), 'worker exited on SIGTERM');
my $took = time() - $t0;
cmp_ok($took, '<', 1.0, sprintf('within a second (%.3fs) with 16 transfers stalled', $took));

# It is started again, and what was in flight is sent again (the rows were
# marked in flight); the healthy endpoint keeps receiving.
ok(wait_until(sub {
	my $p = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
	$p && $p ne $pid }), 'worker restarted after SIGTERM');
$node->safe_psql('postgres', "SELECT webhook.disable_endpoint($hole, 'blackholed')");
cmp_ok(time_burst(10), '<', 10, 'healthy endpoint served by the new worker');

# pg_terminate_backend: the same.
$pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_until(sub {
	my $p = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
	$p && $p ne $pid }), 'worker restarted after pg_terminate_backend');

# SIGHUP: a reload is applied by the worker.
my $offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "webhook.max_concurrency = 8");
$node->reload;
ok($node->wait_for_log(qr/webhook worker reloaded its settings/, $offset), 'worker reloads on SIGHUP');

# Idle, the worker runs no queries: its transaction count stays put.
my $xacts = sub {
	$node->safe_psql('postgres', "SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'");
};
usleep(500_000);
my $x0 = $xacts->();
sleep 3;
my $x1 = $xacts->();
# our own two queries count as two transactions each
cmp_ok($x1 - $x0, '<=', 4, 'no worker transactions while idle (3s)');

# The worker keeps endpoints in memory; a change made by hand, not through
# the API, reaches it all the same (a trigger on webhook.endpoint tells it).
$node->safe_psql('postgres',
	"UPDATE webhook.endpoint SET url = '" . $recv->url('/moved') . "' WHERE id = $healthy");
$node->safe_psql('postgres', "SELECT webhook.emit('tick', '{\"moved\": true}')");
ok($recv->wait_for_deliveries(1, '/moved'), 'a url changed by hand is used for the next event');
my $marker = create_endpoint($node, $recv->url('/marker'), events => "'{tick}'");
$node->safe_psql('postgres', "UPDATE webhook.endpoint SET state = 'disabled' WHERE id = $healthy");
$node->safe_psql('postgres', "SELECT webhook.emit('tick', '{\"disabled\": true}')");
ok($recv->wait_for_deliveries(1, '/marker'), 'the next event reached another endpoint');
is(scalar($recv->deliveries('/moved')), 1, 'but not the endpoint disabled by hand');

# DROP EXTENSION does not block on the worker, and CREATE brings it back to work.
$node->safe_psql('postgres', 'DROP EXTENSION webhook CASCADE');

# Without the extension the worker, once woken (here by a reload), finds
# nothing to do and sleeps again until a commit or its 10 s check: a library
# preloaded for a database without the extension costs nothing. Measured as above.
$offset = -s $node->logfile;
$node->reload;
ok($node->wait_for_log(qr/webhook worker reloaded its settings/, $offset), 'worker woken without the extension');
$x0 = $xacts->();
sleep 3;
$x1 = $xacts->();
cmp_ok($x1 - $x0, '<=', 6, 'no worker rounds without the extension (3s)');

$node->safe_psql('postgres', 'CREATE EXTENSION webhook');
my $again = create_endpoint($node, $recv->url('/again'));
$node->safe_psql('postgres', "SELECT webhook.emit('after_recreate', '{}')");
ok($recv->wait_for_deliveries(1, '/again'), 'delivers after DROP and CREATE EXTENSION');

# Claims skip the queue's delivered rows, but never a row that may still
# commit: an event queued first and committed after twenty later ones were
# delivered arrives at once. A floor moved past it would leave it to the
# worker's full check, every 10 s; three rounds with 2 s deadlines tell.
sub arrives_within
{
	my ($path, $type, $round, $seconds) = @_;
	return wait_until(
		sub {
			grep { $_->{body} =~ /"$type"/ && $_->{body} =~ /"round": $round\b/ } $recv->deliveries($path);
		},
		$seconds);
}

for my $round (1 .. 3)
{
	my $before = scalar($recv->deliveries('/again'));
	my $early = $node->background_psql('postgres');
	$early->query_safe('BEGIN');
	$early->query_safe("SELECT webhook.emit('committed_late', '{\"round\": $round}')");
	$node->safe_psql('postgres', "SELECT webhook.emit('committed_first', jsonb_build_object('i', $_))")
	  for 1 .. 20;
	ok($recv->wait_for_deliveries($before + 20, '/again'), "round $round: the later events arrive");
	$early->query_safe('COMMIT');
	ok(arrives_within('/again', 'committed_late', $round, 2),
		"round $round: the event committed late arrives within 2 s");
	$early->quit;
}

# A new queue starts its ids over: dropped and created again in one
# transaction, between two of the worker's rounds, claims start over too.
$offset = -s $node->logfile;
$node->safe_psql('postgres',
	'BEGIN; DROP EXTENSION webhook CASCADE; CREATE EXTENSION webhook; COMMIT');
my $anew = create_endpoint($node, $recv->url('/anew'));
$node->safe_psql('postgres', "SELECT webhook.emit('after_quick_recreate', '{}')");
ok($recv->wait_for_deliveries(1, '/anew', 5), 'delivers within 5 s after DROP and CREATE EXTENSION in one transaction');
unlike(slurp_file($node->logfile, $offset), qr/round failed/, 'with no failed round on the way');

# So do ids set back by hand.
$node->safe_psql('postgres', "SELECT webhook.emit('before_restart', jsonb_build_object('i', g)) FROM generate_series(1, 5) g");
ok($recv->wait_for_deliveries(6, '/anew'), 'five more events');
$node->safe_psql('postgres', 'ALTER SEQUENCE webhook.queue_id_seq RESTART');
$node->safe_psql('postgres', "SELECT webhook.emit('after_restart', '{}')");
ok($recv->wait_for_deliveries(7, '/anew', 5), 'delivers within 5 s after the queue sequence is restarted');

# A sequence that hands out ids from a per-session cache gives no bound on
# the ids still to come: claims keep starting at the first row. Session A
# takes a block of ids, other sessions take later blocks and are delivered,
# then A queues an event with one of its early ids.
$node->safe_psql('postgres', 'ALTER SEQUENCE webhook.queue_id_seq CACHE 50');
for my $round (1 .. 3)
{
	my $before = scalar($recv->deliveries('/anew'));
	my $cached = $node->background_psql('postgres');
	$cached->query_safe("SELECT webhook.emit('cached_first', '{}')");
	$node->safe_psql('postgres', "SELECT webhook.emit('other_session', jsonb_build_object('i', $_))")
	  for 1 .. 5;
	ok($recv->wait_for_deliveries($before + 6, '/anew'), "cache round $round: the other sessions' events arrive");
	$cached->query_safe("SELECT webhook.emit('cached_later', '{\"round\": $round}')");
	ok(arrives_within('/anew', 'cached_later', $round, 2),
		"cache round $round: an event with an id from an older cached block arrives within 2 s");
	$cached->quit;
}
$node->safe_psql('postgres', 'ALTER SEQUENCE webhook.queue_id_seq CACHE 1');

# COMMIT PREPARED wakes no one: the full check, every 10 s, claims from the
# queue's first row and finds the event.
$node->safe_psql('postgres',
	"BEGIN; SELECT webhook.emit('prepared', '{}'); PREPARE TRANSACTION 'webhook_2pc'");
$node->safe_psql('postgres', "SELECT webhook.emit('not_prepared', '{}')");
ok(wait_until(sub { grep { $_->{body} =~ /"not_prepared"/ } $recv->deliveries('/anew') }),
	'an event committed beside a prepared transaction arrives');
$node->safe_psql('postgres', "COMMIT PREPARED 'webhook_2pc'");
ok(wait_until(sub { grep { $_->{body} =~ /"prepared"/ } $recv->deliveries('/anew') }, 15),
	'an event committed by COMMIT PREPARED arrives, found by the full check');

# A backlog of events no endpoint wants is claimed batch after batch, with
# no delivery to wake the worker between them: four batches of 500 do not
# hold up the event behind them until a full check each (10 s apiece).
$node->safe_psql('postgres', "SELECT webhook.disable_endpoint($anew, 'done')");
create_endpoint($node, $recv->url('/picky'), events => "'{wanted}'");
$node->safe_psql('postgres', 'SHOW webhook.batch_size') eq '500' or die 'batch_size is not 500';
$node->safe_psql('postgres',
	"SELECT webhook.emit('unwanted', jsonb_build_object('i', g)) FROM generate_series(1, 2000) g");
$node->safe_psql('postgres', "SELECT webhook.emit('wanted', '{}')");
ok($recv->wait_for_deliveries(1, '/picky', 3), 'an event behind 2,000 that no endpoint wants arrives within 3 s');
is($node->safe_psql('postgres', 'SELECT count(*) FROM webhook.queue'), '0', 'and the queue is empty');

$recv->stop;
$node->stop;
done_testing();
