# Rate limits (rate_limit on an endpoint): a limit of 20 a second spreads
# 60 deliveries over more than two seconds, no second holding more than 20,
# while another endpoint's 60 arrive at once; the worker sleeps meanwhile
# rather than spinning; 429 with Retry-After keeps its meaning.
use strict;
use warnings;
use List::Util qw(max min);
use PostgreSQL::Test::Utils;
use Test::More;
use WebhookTest;

my $node = webhook_node('rate_limit');
my $recv = start_receiver();
my $limited = create_endpoint($node, $recv->url('/limited'), events => "'{limited}'", rate_limit => 20);
my $free = create_endpoint($node, $recv->url('/free'), events => "'{free}'");
is($node->safe_psql('postgres', "SELECT rate_limit FROM webhook.endpoint WHERE id = $limited"), '20',
	'the limited endpoint has rate_limit 20');

# The worker's CPU time so far, in seconds (utime + stime of /proc/<pid>/stat).
my $worker = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'webhook worker'");
sub worker_cpu
{
	open my $fh, '<', "/proc/$worker/stat" or die "cannot read /proc/$worker/stat: $!";
	my $stat = <$fh>;
	close $fh;
	$stat =~ s/^.*\) //;    # past the command name, which may hold spaces
	my @f = split / /, $stat;
	return ($f[11] + $f[12]) / 100;    # fields 14 and 15, in clock ticks of 1/100 s
}

# 60 events for each endpoint, queued in one transaction.
my $cpu_before = worker_cpu();
my $started = time();
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT webhook.emit('limited', jsonb_build_object('n', n)) FROM generate_series(1, 60) n;
	SELECT webhook.emit('free', jsonb_build_object('n', n)) FROM generate_series(1, 60) n;
	COMMIT;
});
ok(wait_idle($node), 'all 120 deliveries were made');
my $elapsed = time() - $started;
my $cpu = worker_cpu() - $cpu_before;

my @limited = sort { $a <=> $b } map { $_->{time} } $recv->deliveries('/limited');
my @free = sort { $a <=> $b } map { $_->{time} } $recv->deliveries('/free');
is(scalar(@limited), 60, 'the limited endpoint got its 60');
is(scalar(@free), 60, 'the other endpoint got its 60');
cmp_ok($limited[-1] - $limited[0], '>=', 2, 'the limited 60 arrived over two seconds or more');

# No one-second window holds more than 20 arrivals. The worker spaces the
# starts 1/20 s apart; the receiver stamps arrivals, which a loaded machine
# may shift by some milliseconds: windows are 0.1 s shorter for that. A
# limiter that let a second's worth through in a burst, or counted per
# calendar second, still puts up to 40 in such a window.
my $most = 0;
for my $i (0 .. $#limited)
{
	my $n = grep { $_ >= $limited[$i] && $_ < $limited[$i] + 0.9 } @limited;
	$most = $n if $n > $most;
}
cmp_ok($most, '<=', 20, "no second holds more than 20 of the limited endpoint's deliveries (most: $most)");
cmp_ok(max(@free), '<', $limited[-1], "the other endpoint's 60 all arrived before the limited endpoint's last");

# No busy waiting: while the limited deliveries were spread out, the worker
# slept between them (a spinning worker would use about all of that time).
cmp_ok($cpu, '<', $elapsed / 2, sprintf('the worker used %.2f s of CPU in %.2f s', $cpu, $elapsed));

# 429 with Retry-After keeps its meaning: the retry waits that long, not 1/20 s.
$recv->set_script(paths => { '/busy' => { statuses => [429], headers => { 'Retry-After' => '2' } } });
my $busy = create_endpoint($node, $recv->url('/busy'), events => "'{busy}'", rate_limit => 20);
my $ev = $node->safe_psql('postgres', "SELECT webhook.emit('busy', '{}')");
ok(wait_events_done($node, $ev), 'a delivery answered 429 was retried and delivered');
my @busy = $recv->deliveries('/busy');
is_deeply([ map { $_->{status} } @busy ], [ 429, 200 ], 'answered 429, then 200');
cmp_ok($busy[1]{time} - $busy[0]{time}, '>=', 1.9, 'the retry waited for Retry-After');

$recv->stop;
$node->stop;
done_testing();
