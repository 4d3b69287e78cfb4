# At-least-once: every event arrives despite a receiver that is down, an
# immediate server stop in the middle of a burst, and a killed worker.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('durability',
	conf => "webhook.retry_schedule = '1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s'\nrestart_after_crash = on\n");
my $recv = start_receiver();
my $ep = create_endpoint($node, $recv->url('/hook'));

# The events (by queue id) the receiver has got at least once.
sub received_events
{
	my %ids;
	for my $r ($recv->deliveries('/hook'))
	{
		$ids{$1} = 1 if $r->{headers}{'webhook-id'} =~ /^msg_(\d+)_/;
	}
	return \%ids;
}

sub all_delivered
{
	my ($tag, $n) = @_;
	# the server may be restarting after the crash: not yet, then
	my ($rc, $ids) = $node->psql('postgres',
		"SELECT string_agg(event_id::text, ',') FROM webhook.delivery WHERE event->>'channel' = '$tag'");
	return 0 if $rc != 0;
	my @ids = split /,/, ($ids // '');
	return 0 if @ids < $n;
	my $got = received_events();
	return !grep { !$got->{$_} } @ids;
}

# 1. The receiver is down during a burst of 2,000, then comes back.
$recv->stop;
burst($node, 2000, 'down');
ok(wait_until(sub {
	$node->safe_psql('postgres', "SELECT count(*) FROM webhook.delivery WHERE last_error IS NOT NULL") > 0 }),
	'deliveries fail while the receiver is down');
$recv->start;
ok(wait_until(sub { all_delivered('down', 2000) }), 'receiver back: all 2,000 events delivered');
# the receiver logs a request before it answers; the worker records the
# answers afterwards, in batches
ok($node->poll_query_until('postgres',
	"SELECT count(*) FROM webhook.delivery WHERE event->>'channel' = 'down' AND status = 'delivered'",
	'2000'), 'and recorded as delivered');

# 2. stop('immediate') in the middle of a burst of 5,000.
# slow enough (16 at a time, 50 ms each: 16 s for the burst) that a stop
# which takes seconds on a loaded machine still lands in its middle
$recv->set_script(delay => 0.05);
my $before = scalar($recv->deliveries('/hook'));
burst($node, 5000, 'crash');
ok(wait_until(sub { scalar($recv->deliveries('/hook')) >= $before + 200 }), 'burst under way');
$node->stop('immediate');
my $mid = scalar($recv->deliveries('/hook')) - $before;
cmp_ok($mid, '<', 5000, "stopped in the middle ($mid of 5000 sent)");
$recv->set_script(delay => 0.002);
$node->start;
ok(wait_until(sub { all_delivered('crash', 5000) }), 'after restart: all 5,000 events delivered at least once');
ok(wait_until(sub {
	$node->safe_psql('postgres',
		"SELECT count(*) FROM webhook.delivery WHERE event->>'channel' = 'crash' AND status = 'delivered'") == 5000 }),
	'and recorded as delivered');
ok($node->poll_query_until('postgres', 'SELECT count(*) FROM webhook.queue', '0'), 'queue drained');

# 3. The worker killed with SIGKILL in the middle of a burst.
$before = scalar($recv->deliveries('/hook'));
burst($node, 3000, 'kill');
ok(wait_until(sub { scalar($recv->deliveries('/hook')) >= $before + 200 }), 'second burst under way');
my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
ok($pid, 'worker found');
kill 'KILL', $pid;
ok(wait_until(sub { all_delivered('kill', 3000) }), 'after the worker was killed: all 3,000 events delivered');
ok(wait_until(sub {
	my ($rc, $p) = $node->psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
	$rc == 0 && $p && $p ne $pid }), 'a new worker runs');

$recv->stop;
$node->stop;
done_testing();
