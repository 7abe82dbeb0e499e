"""Write minipeft/lab/apple_nli.jsonl, the course's own small natural-language-inference set (package data, read
by minipeft.lab.data).

Every item below was written by hand for this project (not taken from SNLI, MNLI, RTE or HANS). An item is a
triple (premise, entailed hypothesis, not-entailed hypothesis), so every premise appears twice, once with each
label, and every phenomenon and every split is exactly balanced. "not_entailment" covers both contradiction and
"neutral" (the hypothesis may be true, but the premise does not guarantee it).

Phenomena (what a shallow model gets wrong):
    negation            not / never / no / nobody, including dropping a restriction under negation
                        (the course's running example: "I have never seen an apple that is not red.")
    quantifiers         all / most / some / few / numbers
    hypernyms           specific -> general in a positive sentence (kitten -> animal); a sibling is not entailed
    reversed_direction  general -> specific (animal -> kitten) is not entailed; converse relations
                        (older / younger, lend / borrow) are entailed only with the arguments swapped correctly
    lexical_overlap     every hypothesis word occurs in the premise, yet it is not entailed (the HANS trap),
                        next to a high-overlap hypothesis that IS entailed
    monotonicity        which direction is safe depends on the context: every / no / few / if / without

Split: per phenomenon, the triples are shuffled with a fixed seed and cut 60/20/20 (by triple, so both
hypotheses of a premise stay in the same split). The running example is always put in `test`, so a trained
model can be asked about it honestly. Run from the repository root:  python data/nli/make_nli.py
"""
import json
import math
import random
from pathlib import Path

SEED = 0
RUNNING_EXAMPLE = "I have never seen an apple that is not red."

# phenomenon -> list of (premise, entailed hypothesis, not-entailed hypothesis)
TRIPLES = {
    "negation": [
        (RUNNING_EXAMPLE, "Every apple I have seen was red.", "I have never seen an apple."),
        ("I have never eaten a mango.", "I have never eaten a ripe mango.", "I have never eaten any fruit."),
        ("The museum is not open on Mondays.", "The museum is closed on Mondays.", "The museum is open on Mondays."),
        ("Nobody in the office speaks German.", "Nobody in the office speaks German fluently.",
         "Somebody in the office speaks German."),
        ("It is not true that Paul missed the bus.", "Paul did not miss the bus.", "Paul missed the bus."),
        ("The door was not left unlocked.", "The door was locked.", "The door was left unlocked."),
        ("None of the children were afraid of the dog.", "No child was afraid of the dog.",
         "Some of the children were afraid of the dog."),
        ("Tom never drinks coffee after lunch.", "Tom does not drink coffee in the late afternoon.",
         "Tom never drinks coffee."),
        ("The report was not written by Sara.", "Sara did not write the report.", "Sara wrote the report."),
        ("There is no milk left in the fridge.", "There is no milk in the fridge.",
         "There is no food left in the fridge."),
        ("The old bridge is not safe to cross.", "Crossing the old bridge is unsafe.",
         "The old bridge is safe to cross."),
        ("Maria does not own a car.", "Maria does not own a red car.", "Maria does not own a vehicle."),
        ("The kitchen light is not on.", "The kitchen light is off.", "The kitchen light is on."),
        ("Not a single guest arrived late.", "No guest arrived late.", "A guest arrived late."),
        ("The shop doesn't sell any bread.", "The shop doesn't sell rye bread.", "The shop doesn't sell any food."),
        ("Ben has never been to Asia.", "Ben has never been to Japan.", "Ben has never been abroad."),
        ("The dog is not allowed on the sofa.", "The dog may not sit on the sofa.", "The dog is allowed on the sofa."),
        ("I don't know anyone who plays the violin.", "I don't know anyone who plays the violin well.",
         "I don't know anyone who plays music."),
        ("The hotel has no rooms with a sea view.", "None of the hotel's rooms has a sea view.",
         "The hotel has no rooms."),
        ("She never reads books that are not about history.", "The books she reads are all about history.",
         "She never reads books."),
        ("Nobody on the team was born before 1990.", "Nobody on the team was born in 1985.",
         "Nobody on the team was born in the 1990s."),
        ("Not all of the windows were closed.", "At least one window was not closed.",
         "None of the windows were closed."),
    ],
    "quantifiers": [
        ("All of the apples in the bowl are green.", "Some of the apples in the bowl are green.",
         "All of the apples in the kitchen are green."),
        ("Some of the students passed the exam.", "At least one student passed the exam.",
         "All of the students passed the exam."),
        ("Most of the guests stayed until midnight.", "Some of the guests stayed until midnight.",
         "All of the guests stayed until midnight."),
        ("Three of my friends went skiing.", "At least two of my friends went skiing.",
         "Four of my friends went skiing."),
        ("Every player on the team scored a goal.", "Each player on the team scored at least one goal.",
         "Every player on the team scored two goals."),
        ("Few people came to the meeting.", "Not many people came to the meeting.",
         "Many people came to the meeting."),
        ("Both of my sisters live in Madrid.", "At least one of my sisters lives in Madrid.",
         "All three of my sisters live in Madrid."),
        ("Each of the ten boxes weighs more than five kilos.", "Each box weighs more than five kilos.",
         "Each of the ten boxes weighs more than ten kilos."),
        ("At least five people signed the letter.", "At least three people signed the letter.",
         "Exactly five people signed the letter."),
        ("Exactly two cars were parked outside.", "Fewer than five cars were parked outside.",
         "At least three cars were parked outside."),
        ("Many of the shops were closed on Sunday.", "Some of the shops were closed on Sunday.",
         "Most of the shops were closed on Sunday."),
        ("All dogs in the shelter have been vaccinated.", "All puppies in the shelter have been vaccinated.",
         "All animals in the shelter have been vaccinated."),
        ("Half of the class is sick today.", "Some of the class is sick today.", "Most of the class is sick today."),
        ("More than twenty people applied for the job.", "More than ten people applied for the job.",
         "More than thirty people applied for the job."),
        ("Fewer than ten people came to the concert.", "Fewer than twenty people came to the concert.",
         "Fewer than five people came to the concert."),
        ("Everyone in the choir can read music.", "Every singer in the choir can read music.",
         "Everyone in the choir can read music quickly."),
        ("All of the letters were delivered on time.", "None of the letters were delivered late.",
         "Some of the letters were delivered late."),
        ("Only some of the tickets were sold.", "Not all of the tickets were sold.", "None of the tickets were sold."),
        ("The whole team agreed with the plan.", "Every member of the team agreed with the plan.",
         "Every member of the team helped write the plan."),
        ("Two of the four tyres are flat.", "At least one tyre is flat.", "All four tyres are flat."),
        ("Nearly all the seats were taken.", "Most of the seats were taken.", "All the seats were taken."),
        ("Several of the eggs were broken.", "Some of the eggs were broken.", "Most of the eggs were broken."),
    ],
    "hypernyms": [
        ("She adopted a kitten last week.", "She adopted an animal last week.", "She adopted a puppy last week."),
        ("Tom ate a pear for breakfast.", "Tom ate a piece of fruit for breakfast.", "Tom ate a peach for breakfast."),
        ("My neighbour plays the cello.", "My neighbour plays a musical instrument.", "My neighbour plays the violin."),
        ("We drove to the coast in a van.", "We drove to the coast in a vehicle.", "We drove to the coast in a truck."),
        ("Sara planted roses in the garden.", "Sara planted flowers in the garden.",
         "Sara planted tulips in the garden."),
        ("The children saw a whale near the boat.", "The children saw an animal near the boat.",
         "The children saw a shark near the boat."),
        ("He wore a wool sweater to the party.", "He wore a sweater to the party.",
         "He wore a cotton sweater to the party."),
        ("Maria is a surgeon at the city hospital.", "Maria is a doctor at the city hospital.",
         "Maria is a nurse at the city hospital."),
        ("The museum bought a painting by Monet.", "The museum bought a work of art.",
         "The museum bought a sculpture by Monet."),
        ("A sparrow landed on the windowsill.", "A bird landed on the windowsill.",
         "A pigeon landed on the windowsill."),
        ("Ali sliced the bread with a knife.", "Ali cut the bread with a knife.", "Ali sliced the cake with a knife."),
        ("Leo sprinted to the station.", "Leo ran to the station.", "Leo cycled to the station."),
        ("The chef fried the onions.", "The chef cooked the onions.", "The chef boiled the onions."),
        ("Emma studies chemistry at university.", "Emma studies a science at university.",
         "Emma studies physics at university."),
        ("Our team won the football match.", "Our team won a game.", "Our team won the tennis match."),
        ("She poured orange juice into a glass.", "She poured a drink into a glass.",
         "She poured apple juice into a glass."),
        ("They live in a cottage near the lake.", "They live in a house near the lake.",
         "They live in a flat near the lake."),
        ("The boy broke his left arm.", "The boy broke his arm.", "The boy broke his right arm."),
        ("A trout was swimming in the stream.", "A fish was swimming in the stream.",
         "A salmon was swimming in the stream."),
        ("Jon bought a laptop yesterday.", "Jon bought a computer yesterday.", "Jon bought a tablet yesterday."),
        ("Grandma knitted a scarf for me.", "Grandma made a scarf for me.", "Grandma bought a scarf for me."),
        ("The storm knocked down an oak in the park.", "The storm knocked down a tree in the park.",
         "The storm knocked down a pine in the park."),
    ],
    "reversed_direction": [
        ("Tom ate some fruit for breakfast.", "Tom ate something for breakfast.", "Tom ate a banana for breakfast."),
        ("A bird landed on the roof.", "An animal landed on the roof.", "A seagull landed on the roof."),
        ("My cousin plays a musical instrument.", "My cousin plays music.", "My cousin plays the piano."),
        ("Sara planted flowers along the fence.", "Sara planted something along the fence.",
         "Sara planted sunflowers along the fence."),
        ("Maria works as a doctor.", "Maria works in medicine.", "Maria works as a surgeon."),
        ("Leo ran to the bus stop.", "Leo went to the bus stop.", "Leo sprinted to the bus stop."),
        ("The chef cooked the fish.", "The chef prepared the fish.", "The chef grilled the fish."),
        ("They bought a vehicle from their neighbour.", "They bought something from their neighbour.",
         "They bought a motorbike from their neighbour."),
        ("Jon watched a film last night.", "Jon watched something last night.",
         "Jon watched a horror film last night."),
        ("A tree fell across the road.", "Something fell across the road.", "A birch fell across the road."),
        ("Emma speaks a foreign language.", "Emma speaks a language other than her native one.",
         "Emma speaks Italian."),
        ("Anna is older than Ben.", "Ben is younger than Anna.", "Ben is older than Anna."),
        ("The bank lent money to Sam.", "Sam borrowed money from the bank.", "Sam lent money to the bank."),
        ("Lucy sold her bike to Mark.", "Mark bought a bike from Lucy.", "Lucy bought a bike from Mark."),
        ("The library is to the left of the bakery.", "The bakery is to the right of the library.",
         "The library is to the right of the bakery."),
        ("Paris is north of Madrid.", "Madrid is south of Paris.", "Madrid is north of Paris."),
        ("The meeting took place before lunch.", "Lunch came after the meeting.",
         "The meeting took place after lunch."),
        ("Kate is Oliver's teacher.", "Oliver is Kate's student.", "Oliver is Kate's teacher."),
        ("The box is heavier than the suitcase.", "The suitcase is lighter than the box.",
         "The suitcase is heavier than the box."),
        ("David gave a present to Laura.", "Laura received a present from David.", "Laura gave a present to David."),
        ("The lamp hangs above the table.", "The table is below the lamp.", "The table is above the lamp."),
        ("Peter is Emma's grandfather.", "Emma is Peter's grandchild.", "Peter is Emma's grandchild."),
    ],
    "lexical_overlap": [
        ("The doctor who met the lawyer smiled.", "The doctor smiled.", "The lawyer smiled."),
        ("The actor near the singer was laughing.", "The actor was laughing.", "The singer was laughing."),
        ("If it rains tomorrow, the match will be cancelled.", "The match will be cancelled if it rains tomorrow.",
         "The match will be cancelled."),
        ("The student was thanked by the teacher.", "The teacher thanked the student.",
         "The student thanked the teacher."),
        ("The dog chased the cat across the yard.", "The cat was chased across the yard by the dog.",
         "The cat chased the dog across the yard."),
        ("Maria believes that Tom stole the money.", "Maria thinks that Tom stole the money.", "Tom stole the money."),
        ("Maybe the museum is closed on Mondays.", "It is possible that the museum is closed on Mondays.",
         "The museum is closed on Mondays."),
        ("The manager said that the report was finished.", "The manager said something about the report.",
         "The report was finished."),
        ("The woman who the boy helped was grateful.", "The boy helped the woman.", "The boy was grateful."),
        ("The senator who the journalist criticised resigned.", "The senator resigned.", "The journalist resigned."),
        ("Unless the bus comes soon, we will walk home.", "We will walk home if the bus does not come soon.",
         "We will walk home."),
        ("The pilot saw the mechanic who fixed the engine.", "The mechanic fixed the engine.",
         "The pilot fixed the engine."),
        ("The hikers who ignored the guide got lost.", "The hikers got lost.", "The guide got lost."),
        ("The student who the professor praised wrote the essay.", "The professor praised the student.",
         "The professor wrote the essay."),
        ("Sam pretended that he was sick.", "Sam pretended to be sick.", "Sam was sick."),
        ("The girl gave the puppy to her brother.", "The girl gave her brother the puppy.",
         "Her brother gave the girl the puppy."),
        ("The chef who the waiter called was busy.", "The chef was busy.", "The waiter was busy."),
        ("The painter admired the sculptor.", "The sculptor was admired by the painter.",
         "The sculptor admired the painter."),
        ("It is unlikely that the train will be late.", "The train will probably not be late.",
         "The train will be late."),
        ("Before the guests arrived, Anna cleaned the kitchen.", "Anna cleaned the kitchen.",
         "The guests cleaned the kitchen."),
        ("The cook tasted the soup that the waiter brought.", "The waiter brought the soup.",
         "The waiter tasted the soup."),
        ("Tom hoped that the team would win.", "Tom wanted the team to win.", "The team won."),
    ],
    "monotonicity": [
        ("Every dog in the park was wearing a collar.", "Every puppy in the park was wearing a collar.",
         "Every animal in the park was wearing a collar."),
        ("Every dog in the park was wearing a red collar.", "Every dog in the park was wearing a collar.",
         "Every dog in the park was wearing a new red collar."),
        ("No one at the party drank wine.", "No one at the party drank red wine.",
         "No one at the party drank alcohol."),
        ("Some students read a novel over the summer.", "Some students read a book over the summer.",
         "Some students read a French novel over the summer."),
        ("Few people in the village own a car.", "Few people in the village own a new car.",
         "Few people in the village own a vehicle."),
        ("Sam left the party without saying goodbye to anyone.",
         "Sam left the party without saying goodbye to his host.", "Sam left the party without speaking to anyone."),
        ("If you see a snake, call the ranger.", "If you see a poisonous snake, call the ranger.",
         "If you see an animal, call the ranger."),
        ("Nobody in the class has visited a volcano.", "Nobody in the class has visited an active volcano.",
         "Nobody in the class has visited a mountain."),
        ("At most three students failed the maths exam.", "At most three students failed the maths exam badly.",
         "At most three students failed an exam."),
        ("Not every guest at the dinner liked the soup.", "Not everyone at the dinner liked the soup.",
         "No guest at the dinner liked the soup."),
        ("Each runner who finished the race got a medal.", "Each runner who finished the race quickly got a medal.",
         "Each runner got a medal."),
        ("Tom didn't eat any vegetables at dinner.", "Tom didn't eat any carrots at dinner.",
         "Tom didn't eat anything at dinner."),
        ("Some of the children were singing loudly.", "Some of the children were singing.",
         "Some of the children were singing loudly in French."),
        ("None of the shops in town sell fresh fish.", "None of the shops in town sell fresh salmon.",
         "None of the shops in town sell fish."),
        ("Everyone who owns a bicycle must register it.", "Everyone who owns a racing bicycle must register it.",
         "Everyone who owns a vehicle must register it."),
        ("Laura rarely eats meat.", "Laura rarely eats beef.", "Laura rarely eats."),
        ("None of my friends has a pet.", "None of my friends has a pet snake.", "None of my relatives has a pet."),
        ("A man with a hat walked into the shop.", "A man walked into the shop.",
         "A man with a red hat walked into the shop."),
        ("Every student who studied passed the test.", "Every student who studied hard passed the test.",
         "Every student passed the test."),
        ("No car in the car park had a flat tyre.", "No red car in the car park had a flat tyre.",
         "No car in the city had a flat tyre."),
        ("Jack has never driven a truck.", "Jack has never driven a fire truck.", "Jack has never driven."),
        ("There were some people swimming in the lake.", "There were some people in the lake.",
         "There were some children swimming in the lake."),
    ],
}


def split_of_each_triple(triples: list, rng: random.Random) -> list[str]:
    """60/20/20 by triple; the running example always goes to test."""
    order = list(range(len(triples)))
    rng.shuffle(order)
    running = [i for i in order if triples[i][0] == RUNNING_EXAMPLE]
    order = running + [i for i in order if i not in running]  # the running example first -> test
    n_eval = math.ceil(0.2 * len(triples))
    splits = [""] * len(triples)
    for rank, i in enumerate(order):
        splits[i] = "test" if rank < n_eval else "validation" if rank < 2 * n_eval else "train"
    return splits


def rows() -> list[dict]:
    rng, out = random.Random(SEED), []
    for phenomenon, triples in TRIPLES.items():
        for k, ((premise, yes, no), split) in enumerate(zip(triples, split_of_each_triple(triples, rng)), 1):
            for hypothesis, label, tag in ((yes, "entailment", "e"), (no, "not_entailment", "n")):
                out.append({"id": f"{phenomenon}-{k:02d}-{tag}", "premise": premise, "hypothesis": hypothesis,
                            "label": label, "phenomenon": phenomenon, "split": split})
    return out


if __name__ == "__main__":
    path = Path(__file__).resolve().parents[2] / "minipeft" / "lab" / "apple_nli.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for row in rows():
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {path} ({len(rows())} pairs)")
