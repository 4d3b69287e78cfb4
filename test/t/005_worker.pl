# The worker's loop: a blackholed endpoint does not hold up a healthy one,
# SIGTERM is answered at once with transfers stalled, SIGHUP reloads
# settings, and a terminated worker comes back.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use WebhookTest;

# autovacuum off: the idle checks below count the database's transactions.
my $node = webhook_node('worker',
	conf => "webhook.timeout = '30s'\nmax_prepared_transactions = 2\nautovacuum = off\n");
my $recv = start_receiver(paths => {
	'/hole' => { blackhole => JSON::PP::true },
	'/barrier' => { delay => 2 },
});
my $healthy = create_endpoint($node, $recv->url('/healthy'), events => "'{tick}'");

# Emit $n ticks in one statement; true once all reached the healthy endpoint.
sub tick_burst
{
	my ($n, $what) = @_;
	my $before = scalar($recv->deliveries('/healthy'));
	my $t0 = time();
	$node->safe_psql('postgres',
		"SELECT webhook.emit('tick', jsonb_build_object('i', g)) FROM generate_series(1, $n) g");
	my $ok = $recv->wait_for_deliveries($before + $n, '/healthy');
	diag(sprintf('%d events to the healthy endpoint%s: %.2fs', $n, $what // '', time() - $t0));
	return $ok;
}

# A blackholed endpoint (accepts, never answers) subscribed to the same events.
my $hole = $node->safe_psql('postgres',
	"SELECT id FROM webhook.create_endpoint('" . $recv->url('/hole') . "', events => '{tick}', verify => false)");
my $hole_ended = "SELECT count(*) FROM webhook.delivery WHERE endpoint_id = $hole AND (attempts > 0 OR status <> 'pending')";
ok(tick_burst(500, ' with a blackholed endpoint beside it'), 'the healthy endpoint gets its 500 events');
# Not held up: they all arrived while the blackholed requests were still
# stalled. Those end at webhook.timeout (30 s) at the earliest; a worker that
# waited for them would have recorded some before the healthy endpoint got
# all 500.
is($node->safe_psql('postgres', $hole_ended), '0',
	'the healthy endpoint is not held up: all 500 arrived before any blackholed request ended');
ok(wait_until(sub { scalar($recv->requests('/hole')) >= 16 }), 'the blackholed endpoint is being sent to');
# Barrier: more events reach the healthy endpoint while the blackholed one
# has hundreds waiting for a slot.
ok(tick_burst(10), 'the healthy endpoint keeps receiving');
is(scalar($recv->requests('/hole')), 16, 'the blackholed endpoint holds only its endpoint_concurrency slots');
is($node->safe_psql('postgres', $hole_ended), '0', 'its 16 requests all still stalled');

# SIGTERM with transfers stalled: the design answers it within a second.
# 5 s leaves room for a loaded machine and still tells a worker that waits
# for its stalled transfers (webhook.timeout, 30 s).
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
my $t0 = time();
kill 'TERM', $pid;
ok(wait_until(sub { !kill(0, $pid) }), 'worker exited on SIGTERM');
my $took = time() - $t0;
cmp_ok($took, '<', 5, sprintf('within 5 s (design: within a second) with 16 transfers stalled (%.3fs)', $took));

# It is started again, and what was in flight is sent again (the rows were
# marked in flight); the healthy endpoint keeps receiving.
ok(wait_until(sub {
	my $p = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
	$p && $p ne $pid }), 'worker restarted after SIGTERM');
$node->safe_psql('postgres', "SELECT webhook.disable_endpoint($hole, 'blackholed')");
ok(tick_burst(10, ' from the new worker'), 'healthy endpoint served by the new worker');

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

# Idle, the worker runs no queries but its full check, every 10 s. Its rounds
# show in pg_stat_activity (query_start of "webhook worker round"); watched
# from another database, so that watching adds no transaction to this one,
# until three rounds in a row are 9 s or more apart (the rounds that end a
# burst of work may come first, at most three of them). The database's
# transactions between the last two are the rounds' own: at most 2, as each
# round's count may show at its start or its end. Not between the first two:
# a round's counts reach pg_stat_database at the next round that flushes
# them, and the first idle round flushes the burst's.
sub idle_rounds
{
	my $watch = sub {
		return split /\|/, $node->safe_psql('template1',
			"SELECT extract(epoch FROM a.query_start), d.xact_commit
			   FROM pg_stat_activity a, pg_stat_database d
			  WHERE a.backend_type = 'webhook worker' AND d.datname = 'postgres'");
	};
	my ($start) = $watch->();
	my @rounds;    # [ query_start, xact_commit when first seen ]
	wait_until(
		sub {
			my ($q, $x) = $watch->();
			return 0 unless defined $q && $q ne '';
			push @rounds, [ $q, $x ] if $q ne (@rounds ? $rounds[-1][0] : $start // '');
			return @rounds > 6 || (@rounds >= 3 && $rounds[-1][0] - $rounds[-2][0] >= 9
				&& $rounds[-2][0] - $rounds[-3][0] >= 9);
		},
		undef, 'three idle rounds of the worker in a row');
	diag('worker rounds seen: ' . join(', ', map { sprintf('%.3f (xacts %d)', @$_) } @rounds));
	return @rounds >= 2 ? ($rounds[-1][0] - $rounds[-2][0], $rounds[-1][1] - $rounds[-2][1]) : (0, 999);
}
my ($gap, $xacts) = idle_rounds();
cmp_ok($gap, '>=', 9, 'idle, the worker runs a round only for its full check, every 10 s');
cmp_ok($xacts, '<=', 2, 'and no other transaction between two of them');

# The worker keeps endpoints in memory; a change made by hand, not through
# the API, reaches it all the same (a trigger on webhook.endpoint tells it).
$node->safe_psql('postgres',
	"UPDATE webhook.endpoint SET url = '" . $recv->url('/moved') . "' WHERE id = $healthy");
$node->safe_psql('postgres', "SELECT webhook.emit('tick', '{\"moved\": true}')");
ok($recv->wait_for_deliveries(1, '/moved'), 'a url changed by hand is used for the next event');
my $marker = create_endpoint($node, $recv->url('/marker'), events => "'{tick}'");
$node->safe_psql('postgres', "UPDATE webhook.endpoint SET state = 'disabled' WHERE id = $healthy");
my $after_disable = $node->safe_psql('postgres', "SELECT webhook.emit('tick', '{\"disabled\": true}')");
ok($recv->wait_for_deliveries(1, '/marker'), 'the next event reached another endpoint');
# once every delivery of that event has an outcome, a request for it to the
# disabled endpoint would be in the log
ok(wait_events_done($node, $after_disable), 'and every delivery of it is recorded');
is(scalar($recv->deliveries('/moved')), 1, 'but not the endpoint disabled by hand');

# DROP EXTENSION does not block on the worker, which, woken at its commit,
# finds the extension gone and leaves: the launcher starts none until CREATE
# EXTENSION, so a database without the extension costs nothing.
$offset = -s $node->logfile;
$node->safe_psql('postgres', 'DROP EXTENSION webhook CASCADE');
ok($node->wait_for_log(qr/webhook worker for database "postgres" exits: the extension is not installed/, $offset),
	'the worker leaves at DROP EXTENSION');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'webhook worker'"),
	'no worker runs without the extension');

$node->safe_psql('postgres', 'CREATE EXTENSION webhook');
my $again = create_endpoint($node, $recv->url('/again'));
$node->safe_psql('postgres', "SELECT webhook.emit('after_recreate', '{}')");
ok($recv->wait_for_deliveries(1, '/again'), 'delivers after DROP and CREATE EXTENSION');

# Claims skip the queue's delivered rows, but never a row that may still
# commit: an event queued first and committed after twenty later ones were
# delivered arrives at once. A floor moved past it would leave it to the
# worker's full check, every 10 s.
#
# No wall-clock bound tells "at once": a barrier does. After the late
# commit, a barrier event goes to an endpoint that answers after 2 s. The
# worker claims in queue order, so the late event is claimed no later than
# the barrier, and its request (to an endpoint that answers at once) starts
# no later; once the barrier's answer is recorded, it has arrived. Left to
# the full check it is missing then (unless that check fell in those 2 s).
sub arrived
{
	my ($path, $type, $round) = @_;
	return scalar(grep { $_->{body} =~ /"$type"/ && $_->{body} =~ /"round": $round\b/ } $recv->deliveries($path));
}

sub barrier_answered
{
	my ($barrier, $round) = @_;
	my $ev = $node->safe_psql('postgres', "SELECT webhook.emit('barrier', '{\"round\": $round}')");
	return $node->poll_query_until('postgres',
		"SELECT status FROM webhook.delivery WHERE event_id = $ev AND endpoint_id = $barrier", 'delivered');
}

my $barrier = create_endpoint($node, $recv->url('/barrier'), events => "'{barrier}'");
for my $round (1 .. 3)
{
	my $early = $node->background_psql('postgres');
	$early->query_safe('BEGIN');
	$early->query_safe("SELECT webhook.emit('committed_late', '{\"round\": $round}')");
	$node->safe_psql('postgres',
		"SELECT webhook.emit('committed_first', jsonb_build_object('i', $_, 'round', $round))")
	  for 1 .. 20;
	ok(wait_until(sub { arrived('/again', 'committed_first', $round) >= 20 }), "round $round: the later events arrive");
	$early->query_safe('COMMIT');
	ok(barrier_answered($barrier, $round), "round $round: a barrier event emitted after the commit is answered (2 s)");
	ok(arrived('/again', 'committed_late', $round),
		"round $round: the event committed late arrived before the barrier's answer (not left to the 10 s full check)");
	$early->quit;
}

# A new queue starts its ids over: dropped and created again in one
# transaction, between two of the worker's rounds, claims start over too.
$offset = -s $node->logfile;
$node->safe_psql('postgres',
	'BEGIN; DROP EXTENSION webhook CASCADE; CREATE EXTENSION webhook; COMMIT');
my $anew = create_endpoint($node, $recv->url('/anew'));
$node->safe_psql('postgres', "SELECT webhook.emit('after_quick_recreate', '{}')");
ok($recv->wait_for_deliveries(1, '/anew', 5),
	'delivers within 5 s (not at the 10 s full check) after DROP and CREATE EXTENSION in one transaction');
unlike(slurp_file($node->logfile, $offset), qr/round failed/, 'with no failed round on the way');

# So do ids set back by hand.
$node->safe_psql('postgres', "SELECT webhook.emit('before_restart', jsonb_build_object('i', g)) FROM generate_series(1, 5) g");
ok($recv->wait_for_deliveries(6, '/anew'), 'five more events');
$node->safe_psql('postgres', 'ALTER SEQUENCE webhook.queue_id_seq RESTART');
$node->safe_psql('postgres', "SELECT webhook.emit('after_restart', '{}')");
ok($recv->wait_for_deliveries(7, '/anew', 5),
	'delivers within 5 s (not at the 10 s full check) after the queue sequence is restarted');

# A sequence that hands out ids from a per-session cache gives no bound on
# the ids still to come: claims keep starting at the first row. Session A
# takes a block of ids, other sessions take later blocks and are delivered,
# then A queues an event with one of its early ids.
# The same barrier tells "at once".
$barrier = create_endpoint($node, $recv->url('/barrier'), events => "'{barrier}'");
$node->safe_psql('postgres', 'ALTER SEQUENCE webhook.queue_id_seq CACHE 50');
for my $round (1 .. 3)
{
	my $cached = $node->background_psql('postgres');
	$cached->query_safe("SELECT webhook.emit('cached_first', '{\"round\": $round}')");
	$node->safe_psql('postgres',
		"SELECT webhook.emit('other_session', jsonb_build_object('i', $_, 'round', $round))")
	  for 1 .. 5;
	ok(wait_until(sub {
			arrived('/anew', 'cached_first', $round) && arrived('/anew', 'other_session', $round) >= 5 }),
		"cache round $round: the other sessions' events arrive");
	$cached->query_safe("SELECT webhook.emit('cached_later', '{\"round\": $round}')");
	ok(barrier_answered($barrier, $round), "cache round $round: a barrier event emitted after it is answered (2 s)");
	ok(arrived('/anew', 'cached_later', $round),
		"cache round $round: an event with an id from an older cached block arrived before the barrier's answer (not left to the 10 s full check)");
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
ok(wait_until(sub { grep { $_->{body} =~ /"prepared"/ } $recv->deliveries('/anew') }, 30),
	'an event committed by COMMIT PREPARED arrives, found by the full check (every 10 s; 30 s allowed)');

# A backlog of events no endpoint wants is claimed batch after batch, with
# no delivery to wake the worker between them: four batches of 500 do not
# hold up the event behind them until a full check each (10 s apiece).
$node->safe_psql('postgres', "SELECT webhook.disable_endpoint(id, 'done') FROM webhook.endpoint WHERE id IN ($anew, $barrier)");
create_endpoint($node, $recv->url('/picky'), events => "'{wanted}'");
$node->safe_psql('postgres', 'SHOW webhook.batch_size') eq '500' or die 'batch_size is not 500';
$node->safe_psql('postgres',
	"SELECT webhook.emit('unwanted', jsonb_build_object('i', g)) FROM generate_series(1, 2000) g");
$node->safe_psql('postgres', "SELECT webhook.emit('wanted', '{}')");
# a full check per batch would take 30 s or more; 5 s is generous for four claims
ok($recv->wait_for_deliveries(1, '/picky', 5),
	'an event behind 2,000 that no endpoint wants arrives within 5 s (not a 10 s full check per batch)');
ok($node->poll_query_until('postgres', 'SELECT count(*) FROM webhook.queue', '0'), 'and the queue is empty');

$recv->stop;
$node->stop;
done_testing();
