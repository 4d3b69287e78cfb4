# Several workers per database (webhook.workers_per_database = 2): both run
# and share the work, each event is delivered once; endpoint_concurrency and
# rate_limit hold across them; a worker terminated is started again with
# nothing lost; going to one worker and back at a reload loses nothing and
# leaves nothing in flight.
use strict;
use warnings;
use List::Util qw(max);
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('workers', conf => "webhook.workers_per_database = 2\n");
my $recv = start_receiver();

# The pids of the database's workers, sorted.
sub worker_pids
{
	my $pids = $node->safe_psql('postgres',
		"SELECT string_agg(pid::text, ',' ORDER BY pid) FROM webhook.worker_status WHERE database = 'postgres'");
	return split /,/, $pids;
}

# Wait for exactly $n workers, none of them in @old; returns their pids.
sub wait_workers
{
	my ($n, @old) = @_;
	my %old = map { $_ => 1 } @old;
	my @pids;
	wait_until(
		sub {
			@pids = worker_pids();
			return @pids == $n && !grep { $old{$_} } @pids;
		},
		undef, "$n new workers") or return ();
	return @pids;
}

# Each event of @ids received on $path: how many times.
sub received
{
	my ($path) = @_;
	my %n;
	$n{ event_id($_) }++ for $recv->deliveries($path);
	return \%n;
}

sub emit
{
	my ($event, $n) = @_;
	my $ids = $node->safe_psql('postgres',
		"SELECT string_agg(webhook.emit('$event', jsonb_build_object('n', n))::text, ',') FROM generate_series(1, $n) n");
	return split /,/, $ids;
}

# 1. Two workers run for the database.
my @pids = wait_workers(2);
is(scalar(@pids), 2, 'two workers run for the database');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'webhook worker' AND datname = 'postgres'"),
	'2', 'pg_stat_activity shows both');

# 2. A burst: every event delivered exactly once, and both workers delivered some.
my $fast = create_endpoint($node, $recv->url('/fast'), events => "'{fast}'");
my @ids = emit('fast', 400);
ok(wait_events_done($node, @ids), 'the burst of 400 was delivered');
my $got = received('/fast');
is(scalar(grep { ($got->{$_} // 0) == 1 } @ids), 400, 'each event arrived exactly once');
ok(wait_until(sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FROM webhook.worker_status WHERE database = 'postgres' AND deliveries > 0") eq '2' }),
	'both workers delivered some (worker_status)');
is($node->safe_psql('postgres',
	"SELECT sum(deliveries) FROM webhook.worker_status WHERE database = 'postgres'"), '400',
	'and their counts add up to the burst');

# 3. endpoint_concurrency = 1 holds across both workers: a slow receiver never
# has two requests at once.
$node->safe_psql('postgres', 'ALTER SYSTEM SET webhook.endpoint_concurrency = 1');
$node->reload;
ok($node->poll_query_until('postgres', 'SHOW webhook.endpoint_concurrency', '1'), 'endpoint_concurrency is 1');
$recv->set_script(paths => { '/slow' => { delay => 0.1 } });
my $slow = create_endpoint($node, $recv->url('/slow'), events => "'{slow}'");
@ids = emit('slow', 20);
ok(wait_events_done($node, @ids), 'the 20 slow deliveries were made');
my @slow = $recv->deliveries('/slow');
is(scalar(@slow), 20, 'the slow endpoint got its 20');
is(max(map { $_->{active} } @slow), 1, 'never two requests at the slow endpoint at once');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET webhook.endpoint_concurrency');
$node->reload;
ok($node->poll_query_until('postgres', 'SHOW webhook.endpoint_concurrency', '16'), 'endpoint_concurrency back to 16');

# 4. rate_limit holds across both: 40 deliveries at 20 a second take two
# seconds or more, no second (windows 0.1 s shorter for the receiver's
# stamps on a loaded machine) holding more than 20.
my $limited = create_endpoint($node, $recv->url('/limited'), events => "'{limited}'", rate_limit => 20);
@ids = emit('limited', 40);
ok(wait_events_done($node, @ids), 'the 40 limited deliveries were made');
my @limited = sort { $a <=> $b } map { $_->{time} } $recv->deliveries('/limited');
is(scalar(@limited), 40, 'the limited endpoint got its 40');
cmp_ok($limited[-1] - $limited[0], '>=', 1.9, 'spread over two seconds or more');
my $most = 0;
for my $t (@limited)
{
	my $n = grep { $_ >= $t && $_ < $t + 0.9 } @limited;
	$most = $n if $n > $most;
}
cmp_ok($most, '<=', 20, "no second holds more than 20 (most: $most)");

# 5. A worker terminated is started again, and nothing is lost: events queued
# around its end are all delivered.
$recv->set_script(paths => { '/fast' => { delay => 0.01 } });
@pids = worker_pids();
@ids = emit('fast', 200);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pids[0])");
my @again = wait_workers(2, $pids[0]);
is(scalar(@again), 2, 'the terminated worker was replaced');
ok(grep({ $_ == $pids[1] } @again), 'the other worker kept running');
ok(wait_events_done($node, @ids), 'the 200 events queued around it were delivered');
$got = received('/fast');
is(scalar(grep { $got->{$_} } @ids), 200, 'each of them arrived');

# 6. A reload from 2 workers to 1 and back, with deliveries in flight: nothing
# lost, nothing left in flight.
sub switch_to
{
	my ($n, @old) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET webhook.workers_per_database = $n");
	$node->reload;
	return wait_workers($n, @old);
}
@pids = worker_pids();
@ids = emit('fast', 300);
my @one = switch_to(1, @pids);
is(scalar(@one), 1, 'at workers_per_database = 1, one new worker runs');
push @ids, emit('fast', 100);
@pids = switch_to(2, @one);
is(scalar(@pids), 2, 'back at 2, two new workers run');
push @ids, emit('fast', 100);
ok(wait_events_done($node, @ids), 'every event of the switches was delivered');
$got = received('/fast');
is(scalar(grep { $got->{$_} } @ids), 500, 'each of the 500 arrived');
is($node->safe_psql('postgres', 'SELECT count(*) FROM webhook.delivery WHERE in_flight OR status <> $$delivered$$'),
	'0', 'none left in flight or pending');

# 7. More endpoints busy at once than the shared limits hold (1,024): 1,100
# endpoints limited to one delivery a second, eight events each, so each
# endpoint stays busy (its next start ahead) for seven seconds or more. The
# deliveries that find no room wait and are all made, and the spacing holds
# on every endpoint.
my $n_ep = 1100;
$node->safe_psql('postgres', qq{
	SELECT count(webhook.create_endpoint('http://127.0.0.1:$recv->{port}/e' || i, name => 'e' || i,
		verify => false, rate_limit => 1, events => '{full}'))
	FROM generate_series(1, $n_ep) i});
@ids = emit('full', 8);
ok(wait_events_done($node, @ids), "the 8 events were delivered to the $n_ep endpoints");
my %times;
push @{ $times{ $_->{path} } }, $_->{time} for grep { $_->{path} =~ m{^/e\d+$} } $recv->deliveries;
is(scalar(keys %times), $n_ep, 'every endpoint got deliveries');
is(scalar(grep { @{ $times{$_} } == 8 } keys %times), $n_ep, 'each got its 8');
# starts 1 s apart; arrival stamps may shift on a loaded machine, two workers
# ignoring each other's spacing would put two within milliseconds
my $gap = 1e9;
for my $t (values %times)
{
	my @t = sort { $a <=> $b } @$t;
	$gap = $t[$_] - $t[ $_ - 1 ] < $gap ? $t[$_] - $t[ $_ - 1 ] : $gap for 1 .. $#t;
}
cmp_ok($gap, '>=', 0.5, sprintf('deliveries to one endpoint at least 0.5 s apart (closest: %.3f s)', $gap));
like(slurp_file($node->logfile), qr/more endpoints are busy at once than the limits shared by the database's workers can hold \(1024\)/,
	'the full table was logged');

$recv->stop;
$node->stop;
done_testing();
